// The relay's context files on a real disk: a damaged record mid-way, a torn agreements.json, a
// log that cannot be read, a write the disk refuses (a child process under a file-size limit),
// and compaction, which keeps the files O(live data) after any number of rewrites and restarts.
import { spawn } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import type { ContextOp } from '../../core/context/replica';
import { openContext } from '../../relay/context';

const fresh = () => mkdtempSync(join(tmpdir(), 'brume-ctxlog-'));
let n = 0;
const put = (key: string, value: unknown, over: Partial<ContextOp> = {}): ContextOp => ({
  opId: `op-${++n}`,
  app: 'app',
  key,
  scope: 'app',
  stamp: { wall: Date.now(), count: n, node: 'w' },
  kind: 'put',
  value: encode(value),
  ...over,
});
const value = (ctx: Awaited<ReturnType<typeof openContext>>, key: string) => {
  const r = ctx.replica.get('app', key, {}, Date.now());
  return r?.value ? decode(r.value) : undefined;
};
/** Bytes of the context files in `dir` (log, snapshot, anything set aside). */
const onDisk = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.startsWith('context.') || f.startsWith('.context.'))
    .reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);

describe('the context log on disk', () => {
  it('starts past a damaged record mid-way: keeps the records before it, sets the file aside', async () => {
    const dir = fresh();
    const ctx = await openContext(dir);
    for (let i = 0; i < 5; i++) await ctx.accept(put(`k${i}`, i), '');
    await ctx.close();
    // Damage the third record's payload: a byte MessagePack never uses.
    const path = join(dir, 'context.log');
    const bytes = readFileSync(path);
    const third = bytes.indexOf(Buffer.from('k2')) - 20;
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.alloc(8, 0xc1), 0, 8, third);
    closeSync(fd);
    const warnings: string[] = [];
    const again = await openContext(dir, { warn: (m) => warnings.push(m) });
    expect([0, 1, 2, 3, 4].map((i) => value(again, `k${i}`))).toEqual([
      0,
      1,
      undefined,
      undefined,
      undefined,
    ]);
    expect(warnings.join('\n')).toMatch(/context\.log: stopped at byte \d+ .*kept the 2 records/);
    expect(readdirSync(dir).some((f) => f.startsWith('context.log.corrupt-'))).toBe(true);
    // It goes on: new writes are stored and survive another restart, without a warning.
    await again.accept(put('k9', 9), '');
    await again.close();
    const third2 = await openContext(dir, { warn: (m) => warnings.push(`again: ${m}`) });
    expect([value(third2, 'k1'), value(third2, 'k9')]).toEqual([1, 9]);
    expect(warnings.filter((w) => w.startsWith('again'))).toEqual([]);
    await third2.close();
  });

  it('starts past a torn agreements.json, setting it aside', async () => {
    const dir = fresh();
    writeFileSync(join(dir, 'agreements.json'), '[{"publicKey":"abc","agreem');
    const warnings: string[] = [];
    const ctx = await openContext(dir, { warn: (m) => warnings.push(m) });
    expect(warnings.join('\n')).toMatch(/agreements\.json is corrupt .* moved it to/);
    await ctx.close();
  });

  it('refuses to start on a log it cannot read, rather than starting empty', async () => {
    const dir = fresh();
    // Over 2 GiB (sparse): readFile cannot hold it. Today's relay started with an empty store.
    const fd = openSync(join(dir, 'context.log'), 'w');
    writeSync(fd, Buffer.from([0]), 0, 1, 2 ** 31 + 10);
    closeSync(fd);
    await expect(openContext(dir)).rejects.toThrow(
      /cannot read .*context\.log .*does not start without its context files/,
    );
  });

  it('refuses a write the disk refuses, cuts the log back, and changes nothing', async () => {
    const dir = fresh();
    // A child relay context under a 64 KiB file-size limit (RLIMIT_FSIZE): writes past it fail
    // with EFBIG, some of them half done, as on a full disk.
    const child = spawn(
      'bash',
      ['-c', 'ulimit -f 64 && exec node_modules/.bin/tsx tests/context-writer.ts "$0"', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const code = await new Promise((r) => child.on('exit', r));
    expect(code, out).toBe(0);
    const result = JSON.parse(out.trim().split('\n').at(-1)!) as {
      acked: string[];
      error: { code: string; message: string };
      unchanged: boolean;
    };
    expect(result.error.code).toBe('E_UNAVAILABLE');
    expect(result.error.message).toMatch(
      /could not store app\/k\d+ \(EFBIG writing .*context\.log\)/,
    );
    expect(result.unchanged).toBe(true);
    expect(result.acked.length).toBeGreaterThan(3);
    // Without the limit: every acknowledged write is there, and nothing was damaged.
    const warnings: string[] = [];
    const ctx = await openContext(dir, { warn: (m) => warnings.push(m) });
    expect(warnings).toEqual([]);
    expect(result.acked.every((id) => ctx.replica.has(id))).toBe(true);
    expect(ctx.replica.state()).toHaveLength(result.acked.length);
    await ctx.close();
  });

  it('stays O(live data) after any number of rewrites and restarts', async () => {
    const dir = fresh();
    const big = (i: number) => new Uint8Array(60_000).fill(i % 251);
    let ctx = await openContext(dir);
    let last = 0;
    for (let round = 0; round < 3; round++) {
      // 200 rewrites of one 60 KB key: 12 MB of log without compaction.
      for (let i = 0; i < 200; i++) {
        last = i + round;
        await ctx.accept(put('big', big(last)), '');
      }
      await ctx.accept(put(`small-${round}`, round), '');
      expect(onDisk(dir)).toBeLessThan(1.5 * 1024 * 1024);
      const cursor = ctx.replica.cursor;
      await ctx.close();
      ctx = await openContext(dir);
      expect(ctx.replica.cursor).toBe(cursor);
      expect(Buffer.from(value(ctx, 'big') as Uint8Array).equals(big(last))).toBe(true);
      expect(value(ctx, `small-${round}`)).toBe(round);
    }
    await ctx.close();
  });

  it('keeps on disk only agreement keys somebody may seal for', async () => {
    const dir = fresh();
    const binding = (k: number) => ({
      publicKey: `key-${k}`,
      agreementKey: new Uint8Array(65).fill(k),
      signature: new Uint8Array(64).fill(k),
    });
    const ctx = await openContext(dir, { trusted: (k) => k === 'key-0', maxAgreements: 50 });
    for (let k = 0; k < 200; k++) ctx.bind(binding(k)); // anonymous joins, and one trusted
    // A private value sealed for key-190 (a recent join): its next writer will seal for key-190 again.
    await ctx.accept(
      put('secret', 0, { value: undefined, sealed: new Uint8Array(9), privacy: ['key-190'] }),
      '',
    );
    // Recent joins still answer while the relay runs; only the kept ones after a restart.
    expect(ctx.agreements(['key-150', 'key-3']).map((b) => b.publicKey)).toEqual(['key-150']);
    await ctx.close();
    const rows = JSON.parse(readFileSync(join(dir, 'agreements.json'), 'utf8')) as {
      publicKey: string;
    }[];
    expect(rows.map((r) => r.publicKey).sort()).toEqual(['key-0', 'key-190']);
    const again = await openContext(dir);
    expect(again.agreements(['key-0', 'key-190', 'key-150']).map((b) => b.publicKey)).toEqual([
      'key-0',
      'key-190',
    ]);
    await again.close();
  });
});
