/**
 * `brume users …` and `brume projects …`: the seed-003 objects of relay/http/objects.ts from the
 * command line, each verb with its --help and --json (the relay's answer as it is, for scripts).
 * @example brume users create alice && brume users key alice --scope call --scope jobs
 *          brume projects add-member vision alice --role deployer --key brume_…
 */
import type { Project, User } from '../projects';
import { type Flag, UsageError } from './args';
import { relayFor, remote } from './remote';

const USER_ACTIONS = ['list', 'create', 'show', 'delete', 'key', 'keys'];
const PROJECT_ACTIONS = [
  'list',
  'create',
  'show',
  'delete',
  'add-member',
  'remove-member',
  'add-app',
  'remove-app',
];

const path = (...parts: string[]) => parts.map(encodeURIComponent).join('/');

/** Prints `value` as JSON with --json, else as `text` makes it. */
function show<T>(json: boolean, value: T, text: (v: T) => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : text(value));
}

function want(args: string[], n: number, usage: string): string[] {
  if (args.length !== n) throw new UsageError(`expected: brume ${usage}`);
  return args;
}

const userLine = (u: User) => `${u.id}  ${u.createdAt}${u.label ? `  ${u.label}` : ''}`;
const projectText = (p: Project) =>
  [
    `${p.id}${p.label ? `  ${p.label}` : ''}`,
    `  apps: ${p.apps.join(', ') || 'none'}`,
    `  members: ${p.members.map((m) => `${m.user} (${m.role})`).join(', ') || 'none'}`,
  ].join('\n');

export async function users(
  positionals: string[],
  values: Record<string, unknown>,
  flag: Flag,
): Promise<number> {
  const [action = 'list', ...args] = positionals;
  if (!USER_ACTIONS.includes(action)) {
    throw new UsageError(`unknown users action "${action}": ${USER_ACTIONS.join(', ')}`);
  }
  const json = Boolean(values.json);
  const relay = await relayFor(flag);
  const base = '/api/users';
  switch (action) {
    case 'list':
      want(args, 0, 'users list');
      return remote('refused', async () => {
        const list = await relay.json<User[]>('GET', base);
        show(json, list, (l) => (l.length ? l.map(userLine).join('\n') : 'no users'));
      });
    case 'create': {
      const [id] = want(args, 1, 'users create <id>');
      return remote('refused', async () => {
        const u = await relay.json<User>('POST', base, { id, label: flag('label') ?? '' });
        show(json, u, (x) => `made user ${x.id}`);
      });
    }
    case 'show': {
      const [id] = want(args, 1, 'users show <id>');
      return remote('refused', async () => {
        show(json, await relay.json<User>('GET', `${base}/${path(id!)}`), userLine);
      });
    }
    case 'delete': {
      const [id] = want(args, 1, 'users delete <id>');
      return remote('refused', async () => {
        await relay.json('DELETE', `${base}/${path(id!)}`);
        show(json, { deleted: id }, () => `deleted user ${id} (and their keys)`);
      });
    }
    case 'key': {
      const [id] = want(args, 1, 'users key <id>');
      const scopes = values.scope as string[] | undefined;
      return remote('refused', async () => {
        const made = await relay.json<{ id: string; scopes: string[]; key: string }>(
          'POST',
          `${base}/${path(id!)}/createKey`,
          { ...(scopes && { scopes }), label: flag('label') ?? '' },
        );
        show(json, made, (k) => `key ${k.id} of ${id} (${k.scopes.join(', ')}):\n${k.key}`);
        if (!json) console.error('this is the only time the key is shown: keep it somewhere safe');
      });
    }
    case 'keys': {
      const [id] = want(args, 1, 'users keys <id>');
      return remote('refused', async () => {
        const list = await relay.json<{ id: string; scopes: string[]; label: string }[]>(
          'POST',
          `${base}/${path(id!)}/keys`,
          {},
        );
        show(json, list, (l) =>
          l.length
            ? l
                .map((k) => `${k.id}  ${k.scopes.join(',')}${k.label ? `  ${k.label}` : ''}`)
                .join('\n')
            : `${id} has no keys`,
        );
      });
    }
  }
  return 2; // not reached: the actions are checked above
}

export async function projects(
  positionals: string[],
  values: Record<string, unknown>,
  flag: Flag,
): Promise<number> {
  const [action = 'list', ...args] = positionals;
  if (!PROJECT_ACTIONS.includes(action)) {
    throw new UsageError(`unknown projects action "${action}": ${PROJECT_ACTIONS.join(', ')}`);
  }
  const json = Boolean(values.json);
  const relay = await relayFor(flag);
  const base = '/api/projects';
  const method = (id: string, name: string, body: object) =>
    remote('refused', async () => {
      const p = await relay.json<Project>('POST', `${base}/${path(id)}/${name}`, body);
      show(json, p, projectText);
    });
  switch (action) {
    case 'list':
      want(args, 0, 'projects list');
      return remote('refused', async () => {
        const list = await relay.json<Project[]>('GET', base);
        show(json, list, (l) => (l.length ? l.map(projectText).join('\n') : 'no projects'));
      });
    case 'create': {
      const [id] = want(args, 1, 'projects create <id>');
      return remote('refused', async () => {
        const p = await relay.json<Project>('POST', base, { id, label: flag('label') ?? '' });
        show(json, p, (x) => `made project ${x.id}\n${projectText(x)}`);
      });
    }
    case 'show': {
      const [id] = want(args, 1, 'projects show <id>');
      return remote('refused', async () => {
        show(json, await relay.json<Project>('GET', `${base}/${path(id!)}`), projectText);
      });
    }
    case 'delete': {
      const [id] = want(args, 1, 'projects delete <id>');
      return remote('refused', async () => {
        await relay.json('DELETE', `${base}/${path(id!)}`);
        show(json, { deleted: id }, () => `deleted project ${id}`);
      });
    }
    case 'add-member': {
      const [id, user] = want(args, 2, 'projects add-member <id> <user> [--role <role>]');
      const role = flag('role');
      return method(id!, 'addMember', { user, ...(role !== undefined && { role }) });
    }
    case 'remove-member': {
      const [id, user] = want(args, 2, 'projects remove-member <id> <user>');
      return method(id!, 'removeMember', { user });
    }
    case 'add-app': {
      const [id, app] = want(args, 2, 'projects add-app <id> <app>');
      return method(id!, 'addApp', { app });
    }
    case 'remove-app': {
      const [id, app] = want(args, 2, 'projects remove-app <id> <app>');
      return method(id!, 'removeApp', { app });
    }
  }
  return 2; // not reached: the actions are checked above
}
