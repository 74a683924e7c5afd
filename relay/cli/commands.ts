/**
 * The `brume` command's one table: each command with its arguments, its summary and its flags
 * (relay/cli/usage.ts makes --help and the flags parseArgs takes from it). A new command is a row
 * here and a handler in relay/cli.ts.
 */

/** One flag of a command: `--name <arg>` (no arg: a switch), its help line. */
export interface FlagRow {
  name: string;
  arg?: string;
  help: string;
  /** Repeatable: parseArgs gives an array. */
  multiple?: boolean;
}

export interface Command {
  name: string;
  /** Its positional arguments, for the help line, e.g. `<app> <service>`. */
  args?: string;
  summary: string;
  /** More lines for its own --help: subcommands, examples, how it behaves. */
  more?: string[];
  flags: FlagRow[];
}

const credentials: FlagRow[] = [
  {
    name: 'relay',
    arg: '<url>',
    help: 'the relay (env BRUME_RELAY, default http://127.0.0.1:8787)',
  },
  { name: 'key', arg: '<key>', help: 'an API key (env BRUME_KEY)' },
  { name: 'token', arg: '<token>', help: 'the admin token (env BRUME_ADMIN_TOKEN)' },
  {
    name: 'data',
    arg: '<dir>',
    help: "the relay's storage directory, to use its admin token (env BRUME_DATA, default .brume); used when no --key or --token is given",
  },
];

const json: FlagRow = { name: 'json', help: 'print the answer as JSON (one value on stdout)' };

const input: FlagRow = {
  name: 'input',
  arg: '<input>',
  help: 'the input: JSON text, @file.json, or @file.msgpack (MessagePack, for binary fields); default {}',
};

/** Every command, in --help's order. */
export const table: readonly Command[] = [
  {
    name: 'start',
    summary: 'run a relay: the page, the app API, the fabric (nodes, calls, context)',
    flags: [], // from its settings: see startHelp and flagsOf
  },
  {
    name: 'new',
    args: '<name>',
    summary:
      'scaffold an app in ./<name>: an AssemblyScript Logic calling a Model, brume.json, a test, a README; it packs and deploys as it is',
    flags: [
      {
        name: 'dir',
        arg: '<dir>',
        help: 'where to write it (default ./<name>); must not exist or be empty',
      },
      {
        name: 'model',
        arg: '<model>',
        help: 'digits (the packaged digit classifier, default), squeezenet (after npm run build:models, random weights), or the path of your own .onnx file',
      },
    ],
  },
  {
    name: 'dev',
    args: '[<dir>]',
    summary:
      'pack and deploy <dir> (default .), then again on every change of its files, until Ctrl-C; a failed build prints the error and keeps watching',
    flags: [
      ...credentials,
      {
        name: 'debounce-ms',
        arg: '<n>',
        help: 'quiet time after a change before rebuilding (default 300)',
      },
      { name: 'once', help: 'pack and deploy once, then exit' },
    ],
    more: [
      "Each deploy is the next patch version after brume.json's and the relay's current one",
      '(0.1.0, then 0.1.1, 0.1.2, …), so each change becomes current at once without editing',
      'brume.json. It watches the files under <dir> (not dotfiles, node_modules or .brume files).',
    ],
  },
  {
    name: 'pack',
    args: '[<dir>]',
    summary:
      'pack <dir>/brume.json (default .) and the files it names into a .brume bundle, compiling AssemblyScript sources and checking the code against it (rpcs exported, model inputs and outputs)',
    flags: [
      { name: 'out', arg: '<file>', help: 'where to write (default <dir>/<name>-<version>.brume)' },
      json,
    ],
  },
  {
    name: 'deploy',
    args: '<file.brume>',
    summary: 'upload a bundle to a relay (needs the deploy scope for its app)',
    flags: [...credentials, json],
  },
  {
    name: 'apps',
    summary: 'list the apps a relay serves: name, current version, services',
    flags: [credentials[0]!, json],
  },
  {
    name: 'call',
    args: '<app> <service>',
    summary: "call a service through the relay and print its answer's value",
    flags: [
      input,
      {
        name: 'rpc',
        arg: '<rpc>',
        help: "the rpc (default: the service's first, or the scheduler's variant)",
      },
      ...credentials,
      { ...json, help: 'print the whole answer (value, node, variant, timing, trace id) as JSON' },
    ],
    more: ['A credential is sent only when one is given: a relay may take anonymous calls.'],
  },
  {
    name: 'submit',
    args: '<app> <service>',
    summary: 'submit a job (POST /api/jobs): the relay runs it when a node is free; prints its id',
    flags: [
      input,
      { name: 'priority', arg: '<n>', help: 'a higher number runs sooner' },
      {
        name: 'deadline-ms',
        arg: '<n>',
        help: 'fail it if it has not finished this many ms from now',
      },
      { name: 'idempotency-key', arg: '<text>', help: 'the same key submits the same job once' },
      ...credentials,
      json,
    ],
  },
  {
    name: 'job',
    args: '<id>',
    summary:
      "a job's state (and result or error); --watch follows it until it ends, --cancel cancels it",
    flags: [
      {
        name: 'watch',
        help: 'print each change of state until it succeeds, fails or is cancelled',
      },
      { name: 'cancel', help: 'cancel it (DELETE /api/jobs/<id>)' },
      ...credentials,
      json,
    ],
  },
  {
    name: 'current',
    args: '<app> <ver>',
    summary: 'make a deployed version current, e.g. to roll back (admin)',
    flags: credentials,
  },
  {
    name: 'keys',
    args: '[list|create|revoke <id>]',
    summary: 'list API keys (admin); create makes one (shown once); revoke <id> removes one',
    flags: [
      {
        name: 'scope',
        arg: '<scope>',
        multiple: true,
        help: 'create: repeatable: deploy:<apps>, context:write:<apps>, call, jobs, metrics, admin; <apps> is a name or a pattern like team-* (deploy alone: every app)',
      },
      { name: 'label', arg: '<text>', help: 'create: a note kept with the key (e.g. "CI")' },
      ...credentials,
      json,
    ],
  },
  {
    name: 'blob',
    args: 'put <file> | get <hash>',
    summary:
      "stream a file to the relay's blob store (prints its hash and size), or a blob back to stdout or --out",
    more: [
      "put needs the jobs scope or a deploy scope; get of an app's file needs no credential, of",
      'another blob the jobs scope. Both show progress on stderr and check the sha256.',
    ],
    flags: [
      {
        name: 'out',
        arg: '<file>',
        help: 'get: write the blob there (checked against its hash; removed if it fails)',
      },
      ...credentials,
      json,
    ],
  },
  {
    name: 'users',
    args: '[<action>]',
    summary: 'users and their keys: list, create, show, delete, key, keys',
    more: [
      "list                  the users (admin: all; a user's key: itself)",
      'create <id>           make a user (admin); --label <text>',
      'show <id>             one user',
      'delete <id>           delete a user, their memberships and their keys (admin)',
      'key <id>              make an API key that acts as the user (admin): --scope (repeatable,',
      '                      default call and jobs), --label; shows the key once',
      "keys <id>             the user's keys, without secrets",
    ],
    flags: [
      { name: 'label', arg: '<text>', help: 'create, key: a note kept with it' },
      {
        name: 'scope',
        arg: '<scope>',
        multiple: true,
        help: 'key: repeatable, as for brume keys create (default call and jobs)',
      },
      ...credentials,
      json,
    ],
  },
  {
    name: 'projects',
    args: '[<action>]',
    summary: 'projects, their apps and members (the seed-003 objects of PROTOCOL.md §6.1)',
    more: [
      'list                  the projects you are a member of (admin: all)',
      "create <id>           make a project; a user's key becomes its owner; --label <text>",
      'show <id>             one project: its apps and members',
      'delete <id>           delete a project (its owners, admin); its apps stay deployed',
      'add-member <id> <user>    add a member or change its role (--role)',
      'remove-member <id> <user> remove a member',
      'add-app <id> <app>    put an app in the project: its members then decide who deploys it and',
      '                      reads its jobs and context; an app deployed already needs deploy:<app>',
      'remove-app <id> <app> take an app out of the project (the key scopes govern it again)',
    ],
    flags: [
      { name: 'label', arg: '<text>', help: 'create: a note kept with it' },
      {
        name: 'role',
        arg: '<role>',
        help: 'add-member: reader, deployer (default) or owner (owners, admin)',
      },
      ...credentials,
      json,
    ],
  },
  {
    name: 'trust',
    args: '[<publicKey>]',
    summary: "list the fog/cloud trust list, or add (or --revoke) a node's public key",
    flags: [
      { name: 'label', arg: '<text>', help: 'a note kept with the key (e.g. "lab desktop")' },
      { name: 'revoke', help: 'remove the key instead' },
      ...credentials,
      json,
    ],
  },
  {
    name: 'token',
    summary:
      "say where a data directory's (or a cluster's) admin token is; --reveal prints it, --rotate replaces it",
    flags: [
      {
        name: 'data',
        arg: '<dir>',
        help: "the relay's storage directory (env BRUME_DATA, default .brume)",
      },
      {
        name: 'redis',
        arg: '<url>',
        help: "a cluster's Redis instead (env BRUME_REDIS): its shared token, which every relay takes at once when rotated",
      },
      {
        name: 'reveal',
        help: 'print the token itself (only it, for scripts: BRUME_ADMIN_TOKEN=$(brume token --reveal))',
      },
      {
        name: 'rotate',
        help: 'replace the token; a single relay takes the new one when restarted, the relays of a cluster (--redis) at once',
      },
    ],
  },
  {
    name: 'node',
    summary: 'run a server node: this machine joins a relay as a cloud or fog node',
    flags: [
      credentials[0]!,
      {
        name: 'role',
        arg: '<role>',
        help: 'cloud or fog (default cloud); either needs its key trusted on the relay (brume trust <key>) to serve as such: an untrusted cloud is refused',
      },
      {
        name: 'data',
        arg: '<dir>',
        help: 'its identity (node-key.json, mode 0600) and app files (env BRUME_NODE_DATA, default .brume-node)',
      },
      {
        name: 'threads',
        arg: '<n>',
        help: 'onnxruntime threads per model (shared by its sessions), Logic workers per service (default cores - 1, at most 4)',
      },
      {
        name: 'concurrency',
        arg: '<n>',
        help: 'calls it runs at once (default 4 x threads, or --max-workers if more)',
      },
      {
        name: 'max-workers',
        arg: '<n>',
        help: "its cap on Logic workers and model sessions per service, whatever a manifest's scale.max asks (default the cores; 1 to 64)",
      },
      {
        name: 'worker-idle-ms',
        arg: '<n>',
        help: "idle time before a Logic worker retires, overriding manifests' scale.idleMs (default theirs, else 30000)",
      },
      {
        name: 'hold-ms',
        arg: '<n>',
        help: 'benchmarks only: each Logic call holds its worker this long without the CPU, so one worker serves about 1000/n calls a second',
      },
      {
        name: 'max-queued',
        arg: '<n>',
        help: 'calls waiting for a slot before it refuses more (default 64)',
      },
      {
        name: 'apps',
        arg: '<a,b>',
        help: 'serve only these apps, loaded at start (default: every app)',
      },
      {
        name: 'logic-timeout-ms',
        arg: '<n>',
        help: 'its cap on a Logic step, whatever manifests ask (as for start)',
      },
      { name: 'logic-memory-mib', arg: '<n>', help: "its cap on a Logic's guest memory" },
      { name: 'logic-heap-mib', arg: '<n>', help: 'the JS heap of each Logic worker thread' },
    ],
    more: ['SIGTERM or SIGINT drains it: no new calls, those in flight finish, then it exits 0'],
  },
];
