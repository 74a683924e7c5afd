/**
 * The Host header allow-list. A page on evil.example whose name is made to resolve to 127.0.0.1
 * (DNS rebinding) reaches a relay on loopback as same-origin, but its requests still carry
 * `Host: evil.example`: refusing every Host that is not one of the relay's names stops it.
 * @example const hosts = hostAllowList(['relay.example.org']);
 *          hosts.listening('127.0.0.1', 8787); hosts.check('localhost:8787'); // passes
 */
import { networkInterfaces } from 'node:os';
import { HostError } from '../core/errors';

export interface HostAllowList {
  /** Adds the names the relay answers to once it knows its address and port. */
  listening(address: string, port: number): void;
  /** Throws HostError naming the host unless it is allowed. */
  check(host: string | undefined): void;
  /** The names allowed, for messages and logs. */
  names(): string[];
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const WILDCARD = new Set(['0.0.0.0', '::']);

/**
 * `extra`: names a person allowed (`--allow-host`): `name` allows it on any port, `name:port` on
 * that port only; `*` turns the check off (a relay behind a proxy that checks Host itself).
 */
export function hostAllowList(extra: readonly string[] = []): HostAllowList {
  const exact = new Set<string>();
  const anyPort = new Set<string>();
  let open = false;
  for (const raw of extra) {
    const name = raw.trim().toLowerCase();
    if (name === '*') open = true;
    else if (/:\d+$/.test(name)) exact.add(name);
    else if (name) anyPort.add(name);
  }

  return {
    listening(address, port) {
      const own = new Set([address]);
      if (LOOPBACK.has(address) || WILDCARD.has(address)) {
        for (const a of LOOPBACK) own.add(a);
      }
      // On every interface, each address of this machine is one of its names.
      if (WILDCARD.has(address)) {
        for (const list of Object.values(networkInterfaces())) {
          for (const i of list ?? []) own.add(i.address);
        }
      }
      for (const a of own) {
        const host = a.includes(':') ? `[${a}]` : a;
        exact.add(`${host}:${port}`);
        if (port === 80) exact.add(host); // browsers leave out the default port
      }
    },
    check(host) {
      if (open) return;
      const h = (host ?? '').toLowerCase();
      if (exact.has(h) || anyPort.has(h.replace(/:\d+$/, ''))) return;
      throw new HostError(
        `Host "${(host ?? '(none)').slice(0, 200)}" is not one of this relay's names (${[...exact].slice(0, 6).join(', ')}): add it with --allow-host (env BRUME_ALLOWED_HOSTS)`,
      );
    },
    names: () => [...exact, ...anyPort],
  };
}
