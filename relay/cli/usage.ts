/**
 * What the `brume` command accepts: the --help text and, per command, the flags parseArgs
 * takes. The two are kept side by side so a new flag is added to both.
 */
import type { ParseArgsConfig } from 'node:util';

export const USAGE = `Usage: brume <command> [options]

Commands:
  start                 run a relay: the page, the app API, the fabric (nodes, calls, context)
  pack <dir>            pack <dir>/brume.json and the files it names into a .brume bundle
  deploy <file.brume>   upload a bundle to a relay (needs the deploy scope for its app)
  current <app> <ver>   make a deployed version current, e.g. to roll back (admin)
  keys                  list API keys (admin)
  keys create           make an API key: --scope (repeatable) and --label; shows the key once
  keys revoke <id>      revoke an API key
  trust [<publicKey>]   list the fog/cloud trust list, or add (or --revoke) a node's public key
  token                 print the admin token of a data directory (--rotate: issue a new one)
  node                  run a server node: this machine joins a relay as a cloud or fog node

start:
  --port <n>            port (env BRUME_PORT, default 8787; 0 picks a free one)
  --host <addr>         interface (env BRUME_HOST, default 127.0.0.1; 0.0.0.0 for the network)
  --data <dir>          storage directory (env BRUME_DATA, default .brume)
  --web <dir>           the built web app (default dist/web)
  --apps <dir>          .brume files deployed when the store has no app yet (default dist/apps)
  --max-bundle-mib <n>  largest bundle a deploy may upload (default 256)
  --max-signal-kib <n>  largest PeerJS signalling message a node may send (env
                        BRUME_MAX_SIGNAL_KIB, default 64; a larger one closes its socket)
  --origin <url>        also let pages from this origin open node sockets (repeatable;
                        env BRUME_ORIGINS, comma-separated); the relay's own is always allowed
  --no-cloud            do not run the relay's own cloud node (onnxruntime-node)
  --context-catchup-kib <n>   bytes of context per catch-up frame, a catch-up in more
                        parts beyond (default 4096, at most 12288: a frame is 16 MiB)
  --context-compact-mib <n>   compact context.log once it is over twice the live
                        context plus this (default 1)
  --context-agreements <n>    agreement keys kept in agreements.json (and recent joins
                        in memory) at most (default 10000)
  --logic-timeout-ms <n>  the cloud node's cap on a Logic step, whatever its manifest asks
                        (default 10000)
  --logic-memory-mib <n>  the cloud node's cap on a Logic's guest memory (default 256)
  --logic-heap-mib <n>  the JS heap of each of the cloud node's Logic worker threads (default 64)
  --allow-host <name>   also answer requests with this Host header (repeatable; env
                        BRUME_ALLOWED_HOSTS, comma-separated): name (any port) or name:port;
                        * allows any. The relay's own names are always allowed; any other Host
                        is refused with 421 (DNS rebinding)
  --call-rate <n>       anonymous HTTP calls per minute per client address (env BRUME_CALL_RATE,
                        default 600); over it: 429 with Retry-After. A key with the call
                        scope (or the admin token) is not limited
  --no-anonymous-calls  HTTP calls and schedules need a key with the call scope (env
                        BRUME_ANONYMOUS_CALLS=off)
  --frame-rate <n>      frames a second a node may send unasked, burst twice that (default 500)
  --max-calls-per-node <n>  calls in flight to one node, and that one node waits on (default 64)
  --max-calls <n>       calls in flight through the relay in all (default 4096)
  --max-call-mib <n>    MiB of call input held for calls in flight, in all (default 256)
  --max-node-buffer-mib <n>  MiB queued for one node before calls to it are refused; a node
                        over it at two heartbeats in a row is closed (default 32)
  --join-timeout-ms <n> a socket that has not joined by then is closed (default 10000)
  --max-conns-per-address <n>  node sockets from one client address (env
                        BRUME_MAX_CONNS_PER_ADDRESS, default 256)
  --max-conns <n>       node sockets in all (env BRUME_MAX_CONNS, default 10000)
  --verify-fraction <f> share (0 to 1) of calls on untrusted nodes also run on a second node
                        and compared; a node that disagrees is quarantined (env
                        BRUME_VERIFY_FRACTION, default 0: only qos.verify calls are checked)
  --max-quarantined <n> nodes kept in quarantine at most, the oldest released first (default 1000)
  --lease-ms <n>        how long a node may reuse a scheduling decision for calls like it
                        before asking again (env BRUME_LEASE_MS, default and at most 2000, the
                        heartbeat period; 0: nodes ask the relay every call)

pack:
  --out <file>          where to write (default <dir>/<name>-<version>.brume)

deploy, current, keys, trust:
  --relay <url>         the relay (env BRUME_RELAY, default http://127.0.0.1:8787)
  --key <key>           an API key (env BRUME_KEY)
  --token <token>       the admin token (env BRUME_ADMIN_TOKEN)
  --data <dir>          the relay's storage directory, to use its admin token (env BRUME_DATA,
                        default .brume); used when no --key or --token is given

keys create:
  --scope <scope>       repeatable: deploy:<apps>, context:write:<apps>, call, jobs, admin;
                        <apps> is a name or a pattern like team-* (deploy alone: every app)
  --label <text>        a note kept with the key (e.g. "CI")

trust:
  --label <text>        a note kept with the key (e.g. "lab desktop")
  --revoke              remove the key instead

node:
  --relay <url>         the relay (env BRUME_RELAY, default http://127.0.0.1:8787)
  --role <role>         cloud or fog (default cloud); either needs its key trusted on the relay
                        (brume trust <key>) to serve as such: an untrusted cloud is refused
  --data <dir>          its identity (node-key.json, mode 0600) and app files (env
                        BRUME_NODE_DATA, default .brume-node)
  --threads <n>         onnxruntime threads per model, Logic workers per service (default
                        cores - 1, at most 4)
  --concurrency <n>     calls it runs at once (default 4 x threads)
  --max-queued <n>      calls waiting for a slot before it refuses more (default 64)
  --apps <a,b>          serve only these apps, loaded at start (default: every app)
  --logic-timeout-ms <n>, --logic-memory-mib <n>, --logic-heap-mib <n>
                        its caps on Logics, whatever their manifests ask (as for start)
  SIGTERM or SIGINT drains it: no new calls, those in flight finish, then it exits 0

token:
  --data <dir>          the relay's storage directory (env BRUME_DATA, default .brume)
  --rotate              replace the token; a running relay takes the new one when restarted

  -h, --help            this text
  -v, --version         the Brume version
`;

export type Options = NonNullable<ParseArgsConfig['options']>;

export const common: Options = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
};

const credentials: Options = {
  relay: { type: 'string' },
  key: { type: 'string' },
  token: { type: 'string' },
  data: { type: 'string' },
};

export const commands: Record<string, Options> = {
  start: {
    port: { type: 'string' },
    host: { type: 'string' },
    data: { type: 'string' },
    web: { type: 'string' },
    apps: { type: 'string' },
    'max-bundle-mib': { type: 'string' },
    'max-signal-kib': { type: 'string' },
    origin: { type: 'string', multiple: true },
    'no-cloud': { type: 'boolean' },
    'context-catchup-kib': { type: 'string' },
    'context-compact-mib': { type: 'string' },
    'context-agreements': { type: 'string' },
    'logic-timeout-ms': { type: 'string' },
    'logic-memory-mib': { type: 'string' },
    'logic-heap-mib': { type: 'string' },
    'allow-host': { type: 'string', multiple: true },
    'call-rate': { type: 'string' },
    'no-anonymous-calls': { type: 'boolean' },
    'frame-rate': { type: 'string' },
    'max-calls-per-node': { type: 'string' },
    'max-calls': { type: 'string' },
    'max-call-mib': { type: 'string' },
    'max-node-buffer-mib': { type: 'string' },
    'join-timeout-ms': { type: 'string' },
    'max-conns-per-address': { type: 'string' },
    'max-conns': { type: 'string' },
    'verify-fraction': { type: 'string' },
    'max-quarantined': { type: 'string' },
    'lease-ms': { type: 'string' },
  },
  pack: { out: { type: 'string' } },
  deploy: { ...credentials },
  current: { ...credentials },
  keys: { ...credentials, scope: { type: 'string', multiple: true }, label: { type: 'string' } },
  token: { data: { type: 'string' }, rotate: { type: 'boolean' } },
  node: {
    relay: { type: 'string' },
    role: { type: 'string' },
    data: { type: 'string' },
    threads: { type: 'string' },
    concurrency: { type: 'string' },
    'max-queued': { type: 'string' },
    apps: { type: 'string' },
    'logic-timeout-ms': { type: 'string' },
    'logic-memory-mib': { type: 'string' },
    'logic-heap-mib': { type: 'string' },
  },
  trust: { ...credentials, label: { type: 'string' }, revoke: { type: 'boolean' } },
};
