import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readDurable, writeDurable } from '../../relay/durable';

describe('durable files', () => {
  it('serializes concurrent writes to one path: every write succeeds, the last one wins', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brume-durable-'));
    const path = join(dir, 'trust.json');
    const writes = Array.from({ length: 24 }, (_, i) => writeDurable(path, JSON.stringify({ i })));
    await Promise.all(writes);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ i: 23 });
    expect(readdirSync(dir)).toEqual(['trust.json']); // no temporary file left behind
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('reads a missing file as undefined and moves a corrupt one aside', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brume-durable-'));
    const path = join(dir, 'agreements.json');
    const warnings: string[] = [];
    expect(
      await readDurable(
        path,
        (b) => JSON.parse(String(b)),
        (m) => warnings.push(m),
      ),
    ).toBe(undefined);
    expect(warnings).toEqual([]);
    writeFileSync(path, '[{"publicKey": "abc"'); // torn
    expect(
      await readDurable(
        path,
        (b) => JSON.parse(String(b)),
        (m) => warnings.push(m),
      ),
    ).toBe(undefined);
    expect(warnings[0]).toMatch(/agreements\.json is corrupt .* moved it to .*corrupt-/);
    const names = readdirSync(dir);
    expect(names).toHaveLength(1);
    expect(names[0]).toMatch(/^agreements\.json\.corrupt-/);
  });

  it('throws read errors other than a missing file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brume-durable-'));
    // A directory where a file should be: EISDIR, not "missing".
    await expect(readDurable(dir, String, () => {})).rejects.toThrow(/EISDIR/);
  });
});
