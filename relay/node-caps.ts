/**
 * What a server node tells the relay about itself: cores, memory, and the onnxruntime-node
 * execution providers it can actually load — each one this build lists is tried on a one-node
 * model, and only those that make a session and run it are reported.
 * @example const caps = await serverCapabilities(2); // { backends: [{ name: 'cpu', detail }], … }
 */
import os from 'node:os';
import * as ort from 'onnxruntime-node';
import type { Capabilities } from '../core/protocol';
import { encodeModel, floatValueInfo } from '../models/onnx-writer';

/** An execution provider this build lists, and whether it loaded here (with why not). */
export interface ProviderProbe {
  name: string;
  loaded: boolean;
  error?: string;
}

/** Y = X + X on a [1] float tensor: enough to make and run a session on a provider. */
function probeModel(): Uint8Array {
  return encodeModel({
    graph: {
      name: 'probe',
      node: [{ opType: 'Add', input: ['x', 'x'], output: ['y'] }],
      input: [floatValueInfo('x', [1])],
      output: [floatValueInfo('y', [1])],
    },
    producerName: 'brume relay/node-caps.ts',
    docString: 'execution provider probe',
  });
}

/** Tries each execution provider onnxruntime-node lists, one at a time. */
export async function probeProviders(): Promise<ProviderProbe[]> {
  const model = probeModel();
  const out: ProviderProbe[] = [];
  for (const { name } of ort.listSupportedBackends()) {
    try {
      const session = await ort.InferenceSession.create(model, {
        executionProviders: [name],
        // A provider that does not load is an answer here, not an error to print.
        logSeverityLevel: 4,
      });
      const r = await session.run({ x: new ort.Tensor('float32', Float32Array.of(2), [1]) });
      await session.release();
      if ((r.y?.data as Float32Array | undefined)?.[0] !== 4) throw new Error('wrong answer');
      out.push({ name, loaded: true });
    } catch (e) {
      out.push({ name, loaded: false, error: (e as Error).message.split('\n')[0]!.slice(0, 200) });
    }
  }
  return out;
}

/**
 * The capabilities a server node joins with. Models run on the CPU provider (the Node platform's
 * runner); the other providers that loaded are named in its detail for the admin to see.
 */
export function serverCapabilities(
  threads: number,
  providers: ProviderProbe[],
): () => Promise<Capabilities> {
  const loaded = providers.filter((p) => p.loaded).map((p) => p.name);
  const detail = `onnxruntime-node ${ort.env.versions.common}, ${threads} thread(s); execution providers that load here: ${loaded.join(', ') || 'none'}`;
  return async () => ({
    backends: [{ name: 'cpu', detail: detail.slice(0, 512) }],
    cores: Math.min(1024, os.availableParallelism()),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    agent: `brume node, node ${process.version}, ${os.platform()} ${os.arch()}`,
  });
}
