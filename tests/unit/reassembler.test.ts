// What one data channel may make a node hold for messages it has partly received: a bounded
// number of them, a bounded number of bytes together, and nothing that stopped arriving.

import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../core/errors';
import { chunk, type PeerFrame, Reassembler } from '../../core/protocol';

type Chunk = Extract<PeerFrame, { t: 'chunk' }>;
const parts = (id: number, bytes: number) =>
  [...chunk(id, new Uint8Array(bytes).fill(id))] as Chunk[];

describe('partial messages per link', () => {
  it('are limited in number, by default 4, and a finished one frees its place', () => {
    const r = new Reassembler();
    const started = [1, 2, 3, 4].map((id) => parts(id, 200_000));
    for (const p of started) expect(r.add(p[0]!)).toBeUndefined();
    const fifth = parts(5, 200_000);
    expect(() => r.add(fifth[0]!)).toThrow(ProtocolError);
    expect(() => r.add(fifth[0]!)).toThrow(
      'message 5 would be partial message 5 on this link (limit 4)',
    );
    // A message in one chunk is never partial: it passes.
    expect(r.add(parts(6, 10)[0]!)).toEqual(new Uint8Array(10).fill(6));
    for (const c of started[0]!.slice(1)) r.add(c);
    expect(r.partials).toBe(3);
    expect(r.add(fifth[0]!)).toBeUndefined();
  });

  it('are limited in bytes together, and the refused one is dropped', () => {
    const r = new Reassembler({ maxPartialBytes: 300_000 });
    const a = parts(1, 250_000); // 4 chunks, the last one completes it
    const b = parts(2, 1_000_000);
    for (const c of a.slice(0, 3)) r.add(c); // 196 608 bytes held
    r.add(b[0]!); // 262 144
    expect(r.bytes).toBe(4 * 65_536);
    expect(() => r.add(b[1]!)).toThrow(
      'partial messages on this link would hold 327680 bytes (limit 300000)',
    );
    expect([r.partials, r.bytes]).toEqual([1, 3 * 65_536]);
    // What completes is handed over and no longer held.
    let whole: Uint8Array | undefined;
    for (const c of a.slice(3)) whole = r.add(c);
    expect(whole).toEqual(new Uint8Array(250_000).fill(1));
    expect([r.partials, r.bytes]).toEqual([0, 0]);
  });

  it('are dropped when no chunk came for staleMs', () => {
    let now = 0;
    const r = new Reassembler({ staleMs: 1000, now: () => now });
    const a = parts(1, 200_000);
    const b = parts(2, 200_000);
    r.add(a[0]!);
    now = 600;
    r.add(b[0]!);
    now = 1500; // a: 1500 ms since its last chunk, b: 900
    r.add(b[1]!);
    expect([r.partials, r.bytes]).toEqual([1, 2 * 65_536]);
    expect(() => r.add(a[1]!)).toThrow('chunk 1 of message 1 arrived where 0 was expected');
  });
});
