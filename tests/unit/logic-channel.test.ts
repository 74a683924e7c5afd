// The channel a tab's Logic and Model workers speak (core/exec/channel.ts; the Logic's is
// logicWorkerClient and exposeLogic), over a real MessageChannel: replies matched by id, bytes
// transferred both ways, guest faults and thrown errors answered as typed errors, and the pool's
// watchdog still in charge.

import { readFileSync } from 'node:fs';
import { MessageChannel } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { fromWire, ModelLoadError } from '../../core/errors';
import { channelClient, type Endpoint, exposeChannel } from '../../core/exec/channel';
import { createLogicPool } from '../../core/exec/logic-pool';
import {
  exposeLogic,
  type LogicWorkerApi,
  logicWorkerClient,
  serveLogic,
} from '../../core/exec/logic-worker';

const wasm = (name: string) =>
  readFileSync(new URL(`../../logics/build/${name}.wasm`, import.meta.url));
const echo = new WebAssembly.Module(wasm('echo'));
const loop = new WebAssembly.Module(wasm('loop-forever'));
const limits = { minPages: 1, maxPages: 256 };

const channels: MessageChannel[] = [];
afterEach(() => {
  for (const c of channels.splice(0)) {
    c.port1.close();
    c.port2.close();
  }
});

/** A worker's two ends in this thread: the host's client and the guest host behind it. */
function pair(api: LogicWorkerApi = serveLogic(() => {})) {
  const c = new MessageChannel();
  channels.push(c);
  exposeLogic(c.port2 as unknown as Endpoint, api);
  return logicWorkerClient(c.port1 as unknown as Endpoint);
}

/** A first step's request, as invokeLogic sends it. */
const request = (input: unknown) => encode(input);

describe('the Logic worker channel', () => {
  it('answers each step by id, however the replies interleave', async () => {
    const client = pair();
    expect((await client.load(echo, limits)).ok).toBe(true);
    const words = Array.from({ length: 20 }, (_, i) => `word ${i}`);
    const replies = await Promise.all(words.map((w) => client.step('echo', request(w))));
    expect(replies.map((r) => r.ok && decode(r.value))).toEqual(
      words.map((w) => ({ t: 'done', value: w })),
    );
  });

  it('transfers the request bytes instead of copying them', async () => {
    const client = pair();
    await client.load(echo, limits);
    const bytes = request(new Uint8Array(1 << 20).fill(7));
    const reply = await client.step('echo', bytes);
    expect(bytes.byteLength).toBe(0); // detached: moved to the worker
    const out = reply.ok && (decode(reply.value) as { value: Uint8Array }).value;
    expect(out && [out.length, out[0], out[out.length - 1]]).toEqual([1 << 20, 7, 7]);
  });

  it('answers a guest fault as a typed error, and the next step gets a fresh instance', async () => {
    const client = pair();
    await client.load(echo, limits);
    const trap = await client.step('trap', request(null));
    expect(trap.ok).toBe(false);
    expect(!trap.ok && fromWire(trap.error).code).toBe('E_LOGIC_FAULT');
    const again = await client.step('echo', request('still here'));
    expect(again.ok && decode(again.value)).toEqual({ t: 'done', value: 'still here' });
  });

  it('leaves a step that never answers to the pool watchdog', async () => {
    let terminated = 0;
    const pool = createLogicPool({
      name: 'test/loop',
      module: loop,
      ...limits,
      timeoutMs: 200,
      // A worker that takes the step and never answers (a guest spinning in its own thread).
      spawn: () => {
        const client = pair({
          load: async () => ({ ok: true, value: 0 }),
          step: () => new Promise(() => {}),
        });
        return { api: client, terminate: () => terminated++ };
      },
    });
    await expect(pool.step('run', request(null))).rejects.toMatchObject({
      code: 'E_LOGIC_TIMEOUT',
    });
    expect([terminated, pool.stats.timeouts, pool.stats.respawns]).toEqual([1, 1, 1]);
  });
});

describe('the channel any worker API speaks', () => {
  interface Runner {
    load(key: string, bytes: Uint8Array): Promise<number>;
    info?(): Promise<string>;
  }
  function runnerPair(api: Runner) {
    const c = new MessageChannel();
    channels.push(c);
    exposeChannel(c.port2 as unknown as Endpoint, api);
    return channelClient<Runner>(c.port1 as unknown as Endpoint, ['load', 'info']);
  }

  it('copies arguments unless told to transfer them, and answers each call', async () => {
    const client = runnerPair({ load: async (key, bytes) => key.length + bytes.length });
    const bytes = new Uint8Array(1000);
    expect(await client.load('abc', bytes)).toBe(1003);
    expect(bytes.byteLength).toBe(1000); // copied, still the caller's
  });

  it('rejects with the typed error the worker threw, and names a method it lacks', async () => {
    const client = runnerPair({
      load: async (key) => {
        throw new ModelLoadError(`${key} is not a model`);
      },
    });
    await expect(client.load('m1', new Uint8Array(1))).rejects.toMatchObject({
      code: 'E_MODEL_LOAD',
      message: 'm1 is not a model',
    });
    await expect(client.info!()).rejects.toThrow(/no info\(\)/);
  });
});
