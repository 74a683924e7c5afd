/**
 * Messages between a host page's `brume.js` and the node running in the relay's iframe. The host
 * page only ever gets answers to calls: the node's keys, storage and context stay in the iframe's
 * origin.
 */
export type EmbedRequest =
  | {
      brume: 1;
      id: number;
      op: 'invoke';
      args: [string, string, unknown, Record<string, unknown>?];
    }
  | { brume: 1; id: number; op: 'schedule'; args: [string, string, Record<string, unknown>?] }
  | { brume: 1; id: number; op: 'pause'; args: [boolean] };

export type EmbedReply =
  | { brume: 1; id: number; ok: true; value: unknown }
  | {
      brume: 1;
      id: number;
      ok: false;
      error: { code: string; message: string; constraint?: string; best?: unknown };
    }
  | {
      brume: 1;
      id: 0;
      status: { ready: boolean; joined: boolean; contributing: boolean; node: string };
    };
