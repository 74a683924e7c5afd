// The cluster link and its shared documents (relay/cluster/cluster.ts, doc.ts) on a real
// redis-server: two relays' copies of one document race and neither loses a change; what Redis
// holds under the document's key is hostile (garbage, too large) and is left out with a warning,
// the last good copy kept; the bounds are refused typed, naming what; a relay hears another's
// channel messages but not garbage on the deploy channel.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InputError, LimitError } from '../../core/errors';
import { type Cluster, openCluster } from '../../relay/cluster/cluster';
import { openDoc } from '../../relay/cluster/doc';
import { clusterParts } from '../../relay/cluster/parts';
import { useRedis } from '../redis-suite';
import { until } from '../until';

const shared = useRedis();
const open: Cluster[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) await c.close();
});
async function relay(warnings: string[] = []): Promise<Cluster> {
  const c = await openCluster(shared.redis.url, { warn: (m) => warnings.push(m) });
  open.push(c);
  return c;
}
const schema = z.array(z.string().max(100));
let docs = 0;
const docOf = (c: Cluster, name: string, warnings: string[] = [], maxBytes = 10_000) =>
  openDoc(c, name, { schema, empty: () => [], maxBytes, warn: (m) => warnings.push(m) });

describe('shared documents', () => {
  it('two relays adding at once: every addition lands, each copy ends the same', async () => {
    const name = `race-${docs++}`;
    const [a, b] = [await docOf(await relay(), name), await docOf(await relay(), name)];
    const add = async (d: typeof a, item: string) => {
      for (;;) {
        const from = d.value();
        if (await d.save([...from, item], from)) return;
      }
    };
    await Promise.all(Array.from({ length: 20 }, (_, i) => add(i % 2 ? a : b, `item${i}`)));
    for (const d of [a, b])
      await until(() => d.value().length === 20, 'all 20 items in both copies');
    expect([...a.value()].sort()).toEqual([...b.value()].sort());
  });

  it('a save decided on an old copy is refused, and the copy is the latest', async () => {
    const name = `stale-${docs++}`;
    const a = await docOf(await relay(), name);
    const b = await docOf(await relay(), name);
    const fromA = a.value();
    expect(await b.save(['b'], b.value())).toBe(true);
    // A has not heard of B's save yet, or has: either way its save on the old copy must fail.
    expect(await a.save(['a'], fromA)).toBe(false);
    expect(a.value()).toEqual(['b']);
  });

  it('garbage or an oversized value in Redis is left out with a warning; the last copy holds', async () => {
    const name = `hostile-${docs++}`;
    const warnings: string[] = [];
    const c = await relay();
    const d = await docOf(c, name, warnings, 1000);
    const from = d.value();
    expect(await d.save(['good'], from)).toBe(true);
    const key = c.redis.key('doc', name);
    await c.redis.client.hset(key, 'version', '100', 'json', '{"not": "a list"');
    await d.refresh();
    expect(d.value()).toEqual(['good']);
    expect(warnings.join('\n')).toMatch(/is not a hostile-\d+ document/);
    await c.redis.client.hset(key, 'version', '101', 'json', JSON.stringify(['x'.repeat(2000)]));
    await d.refresh();
    expect(d.value()).toEqual(['good']);
    expect(warnings.join('\n')).toMatch(/over 1000 bytes/);
    // The next save writes over what could not be read.
    expect(await d.save(['mended'], d.value())).toBe(true);
    expect(JSON.parse((await c.redis.client.hget(key, 'json'))!)).toEqual(['mended']);
  });

  it('a save over the bound is refused, naming it, and nothing is written', async () => {
    const d = await docOf(await relay(), `big-${docs++}`, [], 100);
    await expect(d.save(['y'.repeat(200)], d.value())).rejects.toThrow(LimitError);
    await expect(d.save(['y'.repeat(200)], d.value())).rejects.toThrow(/over 100 bytes/);
    expect(d.value()).toEqual([]);
  });
});

describe('the cluster link', () => {
  it('channels: heard by the others; a bad name refused; garbage deploy news ignored', async () => {
    const a = await relay();
    const warnings: string[] = [];
    const b = await relay(warnings);
    const heard: string[] = [];
    b.listen('test:chan', (m) => heard.push(m));
    expect(() => b.listen('no spaces', () => {})).toThrow(InputError);
    await until(async () => {
      await a.publish('test:chan', 'hello');
      return heard.includes('hello');
    }, 'b to hear a');
    const dir = mkdtempSync(join(tmpdir(), 'brume-doc-'));
    try {
      const parts = await clusterParts(b, { blobDir: dir, warn: (m) => warnings.push(m) });
      const news: string[] = [];
      parts.onCurrent((name, version) => news.push(`${name}@${version}`));
      await a.publish('apps:current', '{"relay":"x","name":"../etc","version":"1"}');
      await a.publish('apps:current', 'not json');
      await a.publish('apps:current', JSON.stringify({ relay: 'x', name: 'ok', version: '1.0.0' }));
      await until(() => news.length > 0, 'the good news');
      expect(news).toEqual(['ok@1.0.0']);
      expect(warnings.filter((w) => /apps:current/.test(w))).toHaveLength(2);
      await parts.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
