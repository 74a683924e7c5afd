// `brume users …` and `brume projects …` as a person runs them: the real CLI process against a
// relay on a real port, each verb's --help, --json answers, a refusal's exit code and message.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inProcessRelay } from '../relay-process';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsx = join(root, 'node_modules', '.bin', 'tsx');
const cli = join(root, 'relay', 'cli.ts');

let server: Awaited<ReturnType<typeof inProcessRelay>>;

function brume(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      tsx,
      [cli, ...args, '--relay', server.relay.url],
      { cwd: root },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

beforeAll(async () => {
  server = await inProcessRelay();
});
afterAll(async () => {
  await server.close();
});

describe('brume users and brume projects', () => {
  it('makes a user and their key, a project they own, and a member, from the command line', async () => {
    const token = ['--token', server.relay.admin.token];
    const [made, other] = await Promise.all([
      brume(['users', 'create', 'alice', '--label', 'Alice', ...token]),
      brume(['users', 'create', 'bob', ...token]),
    ]);
    expect(made).toMatchObject({ code: 0, stdout: 'made user alice\n' });
    expect(other.code).toBe(0);
    const key = await brume(['users', 'key', 'alice', '--scope', 'call', '--json', ...token]);
    expect(key.code).toBe(0);
    const { key: secret, user, scopes } = JSON.parse(key.stdout);
    expect({ user, scopes }).toEqual({ user: 'alice', scopes: ['call'] });

    const project = await brume(['projects', 'create', 'vision', '--key', secret]);
    expect(project.stdout).toContain('members: alice (owner)');
    const member = await brume([
      'projects',
      'add-member',
      'vision',
      'bob',
      '--role',
      'reader',
      '--key',
      secret,
      '--json',
    ]);
    expect(JSON.parse(member.stdout).members).toEqual([
      { user: 'alice', role: 'owner' },
      { user: 'bob', role: 'reader' },
    ]);
    // The relay holds what the CLI said it did.
    expect(server.relay.projects.listProjects({ kind: 'admin' })[0]!.members).toHaveLength(2);
  }, 120_000);

  it('prints a refusal with its status and code, and exits 1', async () => {
    const r = await brume(['users', 'create', 'mallory', '--key', 'brume_nobody']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('401 E_AUTH');
  }, 60_000);

  it('has --help for each, and exits 2 on an unknown action or a missing argument', async () => {
    const [help, phelp, bad, missing] = await Promise.all([
      brume(['users', '--help']),
      brume(['projects', '--help']),
      brume(['projects', 'rename', '--token', 'x']),
      brume(['projects', 'add-member', 'vision', '--token', 'x']),
    ]);
    expect(help.stdout).toContain('Usage: brume users');
    expect(phelp.stdout).toContain('add-member <id> <user>');
    expect(bad).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('unknown projects action "rename"'),
    });
    expect(missing).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('projects add-member <id> <user>'),
    });
  }, 120_000);
});
