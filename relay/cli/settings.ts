/**
 * The one table of `brume start`'s settings. Each row is a flag, an environment variable
 * (`BRUME_` and the key in SNAKE_CASE), a config-file key, a default and a help line: --help, the
 * flags parseArgs takes, the config file's schema and --print-config are all made from it, so
 * they cannot drift apart.
 */
import { z } from 'zod';
import { defaultJobLimits } from '../jobs/job';
import { defaultLimits } from '../limits';
import { logLevels } from '../log';

/** What a value may be: its file schema, how a flag's or env's text becomes that, and in words. */
export interface Kind {
  /** For messages: `--port must be ${what}`. */
  what: string;
  /** Checks (and converts) the value as the config file holds it. */
  schema: z.ZodType;
  /** A flag's or environment variable's text as the file would hold it (the schema checks it). */
  fromText(text: string): unknown;
  /** A path: relative ones resolve against the config file's folder, or the cwd. */
  path?: boolean;
}

export interface Setting {
  /** The config file's key; also the environment variable's name (see envName). */
  key: string;
  /** The flag without `--`; none for a secret, which a flag would show to `ps`. */
  flag?: string;
  /** What the flag takes, for --help; none: a switch, which sets the value to false. */
  arg?: string;
  /** Repeatable flag, comma-separated environment variable, array in the file. */
  list?: boolean;
  kind: Kind;
  /** As the file would hold it; none: unset unless given. */
  default?: unknown;
  /** A relative default is in the installed package (the build outputs), not the cwd. */
  inPackage?: boolean;
  /** Masked by --print-config. */
  secret?: boolean;
  help: string;
}

const int = (min: number, max: number): Kind => ({
  what: `a whole number from ${min} to ${max}`,
  schema: z.number().int().min(min).max(max),
  fromText: (t) => (/^\d+$/.test(t) ? Number(t) : t),
});

/** 0 (unset: the default applies) or a whole number from min to max. */
const zeroOr = (min: number, max: number): Kind => ({
  what: `0 or a whole number from ${min} to ${max}`,
  schema: z.union([z.literal(0), z.number().int().min(min).max(max)]),
  fromText: (t) => (/^\d+$/.test(t) ? Number(t) : t),
});

const fraction: Kind = {
  what: 'a number from 0 to 1',
  schema: z.number().min(0).max(1),
  fromText: (t) => (t.trim() === '' || Number.isNaN(Number(t)) ? t : Number(t)),
};

const text = (what: string, pattern = /^[^\0]{1,1000}$/): Kind => ({
  what,
  schema: z.string().regex(pattern),
  fromText: (t) => t,
});

const path: Kind = { ...text('a path'), path: true };

const oneOf = (values: readonly [string, ...string[]]): Kind => ({
  what: `one of ${values.join(', ')}`,
  schema: z.enum(values),
  fromText: (t) => t,
});

const onOff: Kind = {
  what: 'true or false (on/off, 1/0 in the environment)',
  schema: z.boolean(),
  fromText: (t) =>
    ({ on: true, true: true, '1': true, off: false, false: false, '0': false })[t] ?? t,
};

const list = (item: z.ZodType, what: string): Kind => ({
  what,
  schema: z.array(item).max(100),
  fromText: (t) => t.split(',').filter(Boolean),
});

const origins = list(
  z
    .string()
    .max(2048)
    .refine((u) => URL.canParse(u))
    .transform((u) => new URL(u).origin),
  'URLs like http://localhost:5173 (at most 100)',
);

const hosts = list(
  z.string().regex(/^[\w.:[\]*-]{1,300}$/),
  'host names, name:port or * (at most 100)',
);

const MiB = 2 ** 20;

/** The settings in --help's order. */
export const settings: readonly Setting[] = [
  {
    key: 'port',
    flag: 'port',
    arg: '<n>',
    kind: int(0, 65535),
    default: 8787,
    help: 'port; 0 picks a free one',
  },
  {
    key: 'host',
    flag: 'host',
    arg: '<addr>',
    kind: text('an address'),
    default: '127.0.0.1',
    help: 'interface; 0.0.0.0 for the network',
  },
  {
    key: 'data',
    flag: 'data',
    arg: '<dir>',
    kind: path,
    default: '.brume',
    help: 'storage directory',
  },
  {
    key: 'redis',
    flag: 'redis',
    arg: '<url>',
    kind: text('a redis://[user:password@]host:port[/db] URL', /^redis:\/\/\S{1,2040}$/),
    // Masked by --print-config: the URL may hold a password (BRUME_REDIS keeps it out of ps).
    secret: true,
    help: 'join the cluster of relays sharing this Redis (run it with appendonly yes, appendfsync always); needs --blob-dir',
  },
  {
    key: 'blobDir',
    flag: 'blob-dir',
    arg: '<dir>',
    kind: path,
    help: 'with --redis: the directory every relay of the cluster shares for blob bytes and app files',
  },
  {
    key: 'web',
    flag: 'web',
    arg: '<dir>',
    kind: path,
    default: 'dist/web',
    inPackage: true,
    help: 'the built web app (the default is in the installed package)',
  },
  {
    key: 'apps',
    flag: 'apps',
    arg: '<dir>',
    kind: path,
    default: 'dist/apps',
    inPackage: true,
    help: '.brume files deployed when the store has no app yet (the default is in the installed package)',
  },
  {
    key: 'adminToken',
    kind: text('32 to 512 characters of A-Z a-z 0-9 _ -', /^[\w-]{32,512}$/),
    secret: true,
    help: 'the admin token to use instead of the one the data directory keeps (no flag: it would show in ps)',
  },
  {
    key: 'maxBundleMib',
    flag: 'max-bundle-mib',
    arg: '<n>',
    kind: int(1, 4096),
    default: 256,
    help: 'largest bundle a deploy may upload',
  },
  {
    key: 'maxBlobMib',
    flag: 'max-blob-mib',
    arg: '<n>',
    kind: int(1, 1_048_576),
    default: 1024,
    help: 'largest blob PUT /api/blobs takes (streamed to disk, never held in memory)',
  },
  {
    key: 'blobGraceMs',
    flag: 'blob-grace-ms',
    arg: '<n>',
    kind: int(1000, 30 * 86_400_000),
    default: 86_400_000,
    help: 'a blob no app, job or key refers to is deleted once older than this (checked every grace period, at most hourly)',
  },
  {
    key: 'maxUploads',
    flag: 'max-uploads',
    arg: '<n>',
    kind: int(1, 10_000),
    default: 16,
    help: 'blob uploads streamed at once; one more is refused (503) until one ends',
  },
  {
    key: 'maxSignalKib',
    flag: 'max-signal-kib',
    arg: '<n>',
    kind: int(1, 16_384),
    default: 64,
    help: 'largest PeerJS signalling message a node may send; a larger one closes its socket',
  },
  {
    key: 'origins',
    flag: 'origin',
    arg: '<url>',
    list: true,
    kind: origins,
    default: [],
    help: "also let pages from this origin open node sockets; the relay's own is always allowed",
  },
  {
    key: 'site',
    flag: 'site',
    arg: '<name>',
    kind: text("1 to 63 letters, digits, '.', '_' or '-'", /^[a-z0-9][a-z0-9._-]{0,62}$/i),
    default: 'main',
    help: "this site's name among federated sites: answers of calls placed here by a peer say it",
  },
  {
    key: 'peers',
    flag: 'peer',
    arg: '<url>',
    list: true,
    kind: list(
      z
        .string()
        .max(2048)
        .refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol)),
      'http(s) URLs of peer sites (at most 100)',
    ),
    default: [],
    help: 'federate with the relay (or cluster) at this URL: apps and global context are pushed to it, calls no local node can take may be placed there. Each needs its key in peerKeys, in the same order',
  },
  {
    key: 'peerKeys',
    list: true,
    kind: list(z.string().regex(/^[^\0,]{16,512}$/), '16 to 512 characters each'),
    default: [],
    secret: true,
    help: 'the key shared with each peer, in the order of peers (no flag: it would show in ps)',
  },
  {
    key: 'cloud',
    flag: 'no-cloud',
    kind: onOff,
    default: true,
    help: "run the relay's own cloud node (onnxruntime-node); the flag turns it off",
  },
  {
    key: 'logLevel',
    flag: 'log-level',
    arg: '<level>',
    kind: oneOf(logLevels),
    default: 'info',
    help: 'fatal, error, warn, info (one line per call), debug, trace or silent; JSON lines, pretty when stdout is a terminal',
  },
  {
    key: 'contextCatchupKib',
    flag: 'context-catchup-kib',
    arg: '<n>',
    kind: int(16, 12288),
    default: 4096,
    help: 'bytes of context per catch-up frame, a catch-up in more parts beyond (a frame is 16 MiB)',
  },
  {
    key: 'contextCompactMib',
    flag: 'context-compact-mib',
    arg: '<n>',
    kind: int(0, 65536),
    default: 1,
    help: 'compact context.log once it is over twice the live context plus this',
  },
  {
    key: 'contextAgreements',
    flag: 'context-agreements',
    arg: '<n>',
    kind: int(0, 1e7),
    default: 10_000,
    help: 'agreement keys kept in agreements.json (and recent joins in memory) at most',
  },
  {
    key: 'logicTimeoutMs',
    flag: 'logic-timeout-ms',
    arg: '<n>',
    kind: int(1, 600_000),
    default: 10_000,
    help: "the cloud node's cap on a Logic step, whatever its manifest asks",
  },
  {
    key: 'logicMemoryMib',
    flag: 'logic-memory-mib',
    arg: '<n>',
    kind: int(1, 4096),
    default: 256,
    help: "the cloud node's cap on a Logic's guest memory",
  },
  {
    key: 'logicHeapMib',
    flag: 'logic-heap-mib',
    arg: '<n>',
    kind: int(16, 4096),
    default: 64,
    help: "the JS heap of each of the cloud node's Logic worker threads",
  },
  {
    key: 'logicMaxWorkers',
    flag: 'logic-max-workers',
    arg: '<n>',
    kind: int(0, 64),
    default: 0,
    help: "the cloud node's cap on Logic workers and model sessions per service, whatever a manifest's scale.max asks; 0: the cores",
  },
  {
    key: 'workerIdleMs',
    flag: 'worker-idle-ms',
    arg: '<n>',
    kind: zeroOr(100, 3_600_000),
    default: 0,
    help: "idle time before one of the cloud node's Logic workers or model sessions retires, overriding manifests' scale.idleMs; 0: theirs, else 30000",
  },
  {
    key: 'allowedHosts',
    flag: 'allow-host',
    arg: '<name>',
    list: true,
    kind: hosts,
    default: [],
    help: "also answer requests with this Host header: name (any port) or name:port; * allows any. The relay's own names are always allowed; any other Host is refused with 421 (DNS rebinding)",
  },
  {
    key: 'callRate',
    flag: 'call-rate',
    arg: '<n>',
    kind: int(1, 1_000_000),
    default: 600,
    help: 'anonymous HTTP calls per minute per client address; over it: 429 with Retry-After. A key with the call scope (or the admin token) is not limited',
  },
  {
    key: 'anonymousCalls',
    flag: 'no-anonymous-calls',
    kind: onOff,
    default: true,
    help: 'HTTP calls and schedules without a credential; the flag makes them need a key with the call scope',
  },
  {
    key: 'frameRate',
    flag: 'frame-rate',
    arg: '<n>',
    kind: int(1, 1_000_000),
    default: 500,
    help: 'frames a second a node may send unasked, burst twice that',
  },
  {
    key: 'maxCallsPerNode',
    flag: 'max-calls-per-node',
    arg: '<n>',
    kind: int(1, 1_000_000),
    default: defaultLimits.callsPerNode,
    help: 'calls in flight to one node, and that one node waits on',
  },
  {
    key: 'maxSessionsPerNode',
    flag: 'max-sessions-per-node',
    arg: '<n>',
    kind: int(1, 100_000),
    default: defaultLimits.sessionsPerNode,
    help: 'sessions one node has open as their caller',
  },
  {
    key: 'maxSessions',
    flag: 'max-sessions',
    arg: '<n>',
    kind: int(1, 10_000_000),
    default: defaultLimits.sessions,
    help: 'sessions open on the relay in all',
  },
  {
    key: 'maxSessionsServed',
    flag: 'max-sessions-served',
    arg: '<n>',
    kind: int(1, 100_000),
    default: defaultLimits.sessionsServed,
    help: 'sessions one node serves (no more are placed on it)',
  },
  {
    key: 'maxCalls',
    flag: 'max-calls',
    arg: '<n>',
    kind: int(1, 10_000_000),
    default: defaultLimits.callsInFlight,
    help: 'calls in flight through the relay in all',
  },
  {
    key: 'maxCallMib',
    flag: 'max-call-mib',
    arg: '<n>',
    kind: int(1, 65536),
    default: defaultLimits.callBytes / MiB,
    help: 'MiB of call input held for calls in flight, in all',
  },
  {
    key: 'maxNodeBufferMib',
    flag: 'max-node-buffer-mib',
    arg: '<n>',
    kind: int(1, 65536),
    default: defaultLimits.nodeBufferedBytes / MiB,
    help: 'MiB queued for one node before calls to it are refused; a node over it at two heartbeats in a row is closed',
  },
  {
    key: 'joinTimeoutMs',
    flag: 'join-timeout-ms',
    arg: '<n>',
    kind: int(100, 3_600_000),
    default: defaultLimits.joinTimeoutMs,
    help: 'a socket that has not joined by then is closed',
  },
  {
    key: 'maxConnsPerAddress',
    flag: 'max-conns-per-address',
    arg: '<n>',
    kind: int(1, 1_000_000),
    default: defaultLimits.connsPerAddress,
    help: 'node sockets from one client address',
  },
  {
    key: 'maxConns',
    flag: 'max-conns',
    arg: '<n>',
    kind: int(1, 10_000_000),
    default: defaultLimits.conns,
    help: 'node sockets in all',
  },
  {
    key: 'verifyFraction',
    flag: 'verify-fraction',
    arg: '<f>',
    kind: fraction,
    default: 0,
    help: 'share (0 to 1) of calls on untrusted nodes also run on a second node and compared; a node that disagrees is quarantined (0: only qos.verify calls are checked)',
  },
  {
    key: 'maxQuarantined',
    flag: 'max-quarantined',
    arg: '<n>',
    kind: int(1, 1e6),
    default: 1000,
    help: 'nodes kept in quarantine at most, the oldest released first',
  },
  {
    key: 'leaseMs',
    flag: 'lease-ms',
    arg: '<n>',
    kind: int(0, 2000),
    default: 2000,
    help: 'how long a node may reuse a scheduling decision for calls like it before asking again; at most the heartbeat period (2000); 0: nodes ask the relay every call',
  },
  {
    key: 'drainMs',
    flag: 'drain-ms',
    arg: '<n>',
    kind: int(0, 600_000),
    default: 10_000,
    help: 'on SIGTERM or SIGINT, how long calls in flight may finish while new ones are refused (503, Retry-After); those still running then fail with E_UNAVAILABLE',
  },
  {
    key: 'maxJobs',
    flag: 'max-jobs',
    arg: '<n>',
    kind: int(1, 10_000_000),
    default: defaultJobLimits.maxActive,
    help: 'jobs queued or running at once; a submit over it gets E_LIMIT (413)',
  },
  {
    key: 'maxJobInputKib',
    flag: 'max-job-input-kib',
    arg: '<n>',
    kind: int(1, 16_384),
    default: defaultJobLimits.maxInputBytes / 1024,
    help: "a job's input, MessagePack-encoded; a larger one goes as a blob (inputBlob)",
  },
  {
    key: 'jobAttempts',
    flag: 'job-attempts',
    arg: '<n>',
    kind: int(1, 100),
    default: defaultJobLimits.maxAttempts,
    help: 'runs of one job at most (a node lost mid-run, or failing on its side, costs one); then it fails with the reasons',
  },
  {
    key: 'jobResultBlobKib',
    flag: 'job-result-blob-kib',
    arg: '<n>',
    kind: int(0, 16_384),
    default: defaultJobLimits.resultBlobBytes / 1024,
    help: 'a job result larger than this, encoded, is stored as a blob (resultBlob) instead of inline',
  },
  {
    key: 'jobsKept',
    flag: 'jobs-kept',
    arg: '<n>',
    kind: int(1, 10_000_000),
    default: defaultJobLimits.maxKept,
    help: 'finished jobs kept readable; the oldest finished is forgotten first',
  },
  {
    key: 'jobTimeoutMs',
    flag: 'job-timeout-ms',
    arg: '<n>',
    kind: int(1000, 86_400_000),
    default: defaultJobLimits.runTimeoutMs,
    help: "the longest one run of a job may take on a node (a job's deadline shortens it); then the run fails and the job runs again elsewhere",
  },
];

/** `maxSignalKib` → `BRUME_MAX_SIGNAL_KIB`. */
export function envName(key: string): string {
  return `BRUME_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** The config file's schema: every key optional, any other key refused. */
export const fileSchema = z
  .object(Object.fromEntries(settings.map((s) => [s.key, s.kind.schema.optional()])))
  .strict();
