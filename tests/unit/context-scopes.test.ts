// The project and user context scopes (issue 15) in the store itself: a project's key is one key
// whichever of its apps writes it, with its own byte budget; a user's key is theirs within one
// app; neither reaches a node (catch-up or fan-out view), nor may a node write one; the wire
// schema wants their owner.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { NodeContext } from '../../core/context/client';
import { memoryKV } from '../../core/context/outbox';
import { type ContextOp, ContextReplica, viewFor } from '../../core/context/replica';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { contextOpSchema } from '../../core/protocol';
import { openContext } from '../../relay/context';

let n = 0;
const op = (over: Partial<ContextOp>): ContextOp => ({
  opId: `op-${++n}`,
  app: 'a',
  key: 'k',
  scope: 'app',
  stamp: { wall: 1000 + n, count: 0, node: 'relay' },
  kind: 'put',
  value: encode(n),
  ...over,
});
const NODE = 'f'.repeat(32);

describe('project and user scopes in a replica', () => {
  it("holds one project key for all of a project's apps, apart from each app's own keys", () => {
    const r = new ContextReplica();
    r.apply(op({ app: 'a', scope: 'project', owner: 'vision', value: encode('from a') }));
    r.apply(op({ app: 'b', scope: 'project', owner: 'vision', value: encode('from b') }));
    r.apply(op({ app: 'a', scope: 'app', value: encode('app a') }));
    r.apply(op({ app: 'a', scope: 'project', owner: 'audio', value: encode('audio') }));
    const read = (app: string, scope: ContextOp['scope'], owner?: string) =>
      decode(r.get(app, 'k', { scope, owner }, 0)!.value!);
    expect(read('a', 'project', 'vision')).toBe('from b');
    expect(read('b', 'project', 'vision')).toBe('from b');
    expect(read('a', 'project', 'audio')).toBe('audio');
    expect(read('a', 'app')).toBe('app a');
    expect(r.get('b', 'k', {}, 0)).toBeUndefined();
  });

  it("keeps each user's key apart, within one app", () => {
    const r = new ContextReplica();
    r.apply(op({ app: 'a', scope: 'user', owner: 'alice', value: encode('alice') }));
    r.apply(op({ app: 'a', scope: 'user', owner: 'bob', value: encode('bob') }));
    expect(decode(r.get('a', 'k', { scope: 'user', owner: 'alice' }, 0)!.value!)).toBe('alice');
    expect(decode(r.get('a', 'k', { scope: 'user', owner: 'bob' }, 0)!.value!)).toBe('bob');
    expect(r.get('b', 'k', { scope: 'user', owner: 'alice' }, 0)).toBeUndefined();
    expect(r.get('a', 'k', {}, 0)).toBeUndefined();
  });

  it("counts a project's keys against the project's budget, whichever app wrote them", () => {
    const r = new ContextReplica({ maxAppBytes: 100 });
    const big = new Uint8Array(60);
    r.check(op({ app: 'a', key: 'x', scope: 'project', owner: 'vision', value: big }));
    r.apply(op({ app: 'a', key: 'x', scope: 'project', owner: 'vision', value: big }));
    // The app's own budget is untouched; the project's holds 60 of its 100 bytes.
    r.check(op({ app: 'b', key: 'y', value: big }));
    expect(() =>
      r.check(op({ app: 'b', key: 'y', scope: 'project', owner: 'vision', value: big })),
    ).toThrow(/project vision.*over the limit of 100/);
    // Replacing the key through another app frees what the first write held.
    r.apply(op({ app: 'b', key: 'x', scope: 'project', owner: 'vision', value: big }));
    expect(r.size().bytes).toBe(60);
  });

  it('shows a node none of them', () => {
    const node = { id: NODE, publicKey: 'pk' };
    expect(viewFor(op({ scope: 'project', owner: 'vision' }), node)).toBeUndefined();
    expect(viewFor(op({ scope: 'user', owner: 'alice' }), node)).toBeUndefined();
    expect(viewFor(op({}), node)).toBeDefined();
  });

  it('wants the owner of a scoped key on the wire, in the right form', () => {
    const parse = (o: Partial<ContextOp>) => contextOpSchema.safeParse(op(o)).success;
    expect(parse({ scope: 'project', owner: 'vision' })).toBe(true);
    expect(parse({ scope: 'user', owner: 'alice' })).toBe(true);
    expect(parse({ scope: 'project' })).toBe(false);
    expect(parse({ scope: 'user', owner: NODE.toUpperCase() })).toBe(false);
    expect(parse({ scope: 'node', owner: 'alice' })).toBe(false);
    expect(parse({ scope: 'node', owner: NODE })).toBe(true);
    expect(parse({ scope: 'team' as ContextOp['scope'] })).toBe(false);
  });
});

describe("the relay's store", () => {
  it('takes project and user keys from its own HTTP API only, never from a node, and keeps them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'brume-scopes-'));
    try {
      const ctx = await openContext(dir, { warn: () => {} });
      const scoped = op({ scope: 'user', owner: 'alice', stamp: ctx.tick() });
      await expect(
        ctx.accept(op({ scope: 'project', owner: 'vision', stamp: ctx.tick() }), NODE),
      ).rejects.toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringContaining('scope') });
      expect(await ctx.accept(scoped, '')).toBeGreaterThan(0);
      await ctx.close();
      const again = await openContext(dir, { warn: () => {} });
      const read = again.replica.get('a', 'k', { scope: 'user', owner: 'alice' }, Date.now());
      expect(read && 'value' in read && decode(read.value!)).toBe(decode(scoped.value!));
      await again.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a node', () => {
  it("answers a Logic's or a page's project, user or unknown scope with a typed refusal, writing nothing", async () => {
    const identity = await loadOrCreateIdentity(memoryKeyStore(), 'scopes');
    const ctx = new NodeContext(identity, memoryKV());
    for (const scope of ['project', 'user']) {
      const request = { op: 'put', key: 'k', value: 1, scope } as never;
      await expect(ctx.serve('a', request)).rejects.toMatchObject({
        code: 'E_UNSUPPORTED',
        message: expect.stringContaining(`?scope=${scope}`),
      });
      await expect(ctx.serve('a', { op: 'get', key: 'k', scope } as never)).rejects.toMatchObject({
        code: 'E_UNSUPPORTED',
      });
    }
    await expect(
      ctx.serve('a', { op: 'delete', key: 'k', scope: 'team' } as never),
    ).rejects.toMatchObject({ code: 'E_INPUT', message: expect.stringContaining('scope') });
    expect(ctx.replica.state()).toEqual([]);
    await ctx.serve('a', { op: 'put', key: 'k', value: 1, scope: 'node' });
    expect(await ctx.serve('a', { op: 'get', key: 'k', scope: 'node' })).toEqual({
      found: true,
      value: 1,
    });
  });
});
