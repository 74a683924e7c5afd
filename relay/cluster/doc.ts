/**
 * A small document every relay of a cluster shares (the fog trust list, users and projects): one
 * JSON value in Redis with a version, a copy in each relay's memory for the checks made on every
 * request, saved optimistically and announced by pub/sub.
 *
 * Keys (after the link's prefix): hash `doc:<name>` holds `version` (a counter) and `json`; its
 * changes are published on channel `doc:<name>` (the new version). A save is one script: it
 * writes only if the version is still the one this relay's copy came from, and publishes in the
 * same step, so a save acknowledged is one every relay hears of; a save that lost the race answers
 * false, with the copy already re-read, and the caller decides again from the new state. Other
 * relays' changes are read on their news, and in whole after the subscriber reconnects (news may
 * have been missed while Redis was away).
 *
 * What Redis holds is as hostile as a file: a value over `maxBytes` or failing `schema` is left
 * out with a warning (the copy stays the last good one, the relay runs on) and the next save
 * writes over it; a save over `maxBytes` is refused (LimitError naming the document).
 * @example const trust = await openDoc(cluster, 'trust', { schema, empty: () => [], maxBytes, warn });
 *          const from = trust.value();
 *          if (!(await trust.save([...from, entry], from))) retry();
 */
import type { z } from 'zod';
import { LimitError } from '../../core/errors';
import { serial } from '../../core/serial';
import type { Cluster } from './cluster';

export interface SharedDoc<T> {
  /** The latest value this relay knows (its own saves, others' news, reconnects). */
  value(): T;
  /**
   * Saves `next`, computed from `from` (a `value()`), unless `from` is no longer the latest (a
   * relay saved since, this one included): true when saved (and `value()` is `next`), false when
   * not (and `value()` is the latest, to decide again from).
   */
  save(next: T, from: T): Promise<boolean>;
  /** Reads the value from Redis again. */
  refresh(): Promise<void>;
  /** Calls `fn` whenever `value()` changes because of another relay. */
  onChange(fn: (value: T) => void): () => void;
  /** Stops listening (the cluster's link stays open). */
  close(): void;
}

/** Writes `json` as version ARGV[1] + 1 if the stored version is ARGV[1]; 0 if it is not. */
const SAVE = `
local v = redis.call('HGET', KEYS[1], 'version') or '0'
if v ~= ARGV[1] then return 0 end
local n = tonumber(v) + 1
redis.call('HSET', KEYS[1], 'version', n, 'json', ARGV[2])
redis.call('PUBLISH', KEYS[2], tostring(n))
return n`;

const NAME = /^[a-z][a-z0-9-]{0,31}$/;

export async function openDoc<T>(
  cluster: Cluster,
  name: string,
  o: {
    schema: z.ZodType<T>;
    empty: () => T;
    /** Largest JSON kept, in bytes. */
    maxBytes: number;
    warn: (message: string) => void;
  },
): Promise<SharedDoc<T>> {
  if (!NAME.test(name)) throw new Error(`a shared document's name must match ${NAME}`);
  const { redis } = cluster;
  const key = redis.key('doc', name);
  const channel = `doc:${name}`;
  let value = o.empty();
  let version = '0';
  const changes = new Set<(value: T) => void>();
  // Reads and saves one at a time: a read never puts back a value older than a save's.
  const oneAtATime = serial();

  function parse(json: string | null): T | undefined {
    if (json === null) return o.empty();
    if (Buffer.byteLength(json) > o.maxBytes) {
      o.warn(`${key} holds over ${o.maxBytes} bytes (its limit): left out, the last copy kept`);
      return undefined;
    }
    try {
      return o.schema.parse(JSON.parse(json));
    } catch (e) {
      o.warn(
        `${key} is not a ${name} document (${(e as Error).message.slice(0, 300)}): left out, the last copy kept`,
      );
      return undefined;
    }
  }

  const refresh = () =>
    oneAtATime(async () => {
      const [v, json] = await redis.run(`read ${name}`, (c) => c.hmget(key, 'version', 'json'));
      const at = v ?? '0';
      if (at === version) return;
      // The version is taken even when the value is not: the next save then writes over it.
      version = at;
      const next = parse(json ?? null);
      if (next === undefined) return;
      value = next;
      for (const fn of changes) fn(value);
    });

  // News of another relay's save: read it unless this copy is that version already.
  const quiet = (why: string) => (e: unknown) =>
    o.warn(`${name}: ${why} failed (${(e as Error).message}); read again on reconnect`);
  const stopNews = cluster.listen(channel, (message) => {
    if (message !== version) void refresh().catch(quiet('reading a change'));
  });
  const stopReconnect = cluster.onReconnect(() => void refresh().catch(quiet('re-reading')));
  await refresh();

  return {
    value: () => value,
    save: (next, from) =>
      oneAtATime(async () => {
        // Decided on a copy older than this one: another save or a re-read came first.
        if (from !== value) return false;
        const json = JSON.stringify(next);
        if (Buffer.byteLength(json) > o.maxBytes) {
          throw new LimitError(
            `${name}: the shared document would hold over ${o.maxBytes} bytes (its limit)`,
          );
        }
        const n = await redis.run(`save ${name}`, (c) =>
          c.eval(SAVE, 2, key, redis.key(channel), version, json),
        );
        if (n === 0) return false;
        version = String(n);
        value = next;
        return true;
      }).then(async (saved) => {
        if (!saved) await refresh();
        return saved;
      }),
    refresh,
    onChange(fn) {
      changes.add(fn);
      return () => changes.delete(fn);
    },
    close() {
      stopNews();
      stopReconnect();
      changes.clear();
    },
  };
}
