// A real redis-server for the tests (Debian's package; .ci/run installs it):
// on a free loopback port, persistence off unless asked for, stopped and
// started again on the same port when a test needs Redis to go away and come
// back. Beside it, what a Sentinel deployment is made of: a replica of
// another server, and redis-sentinel processes watching a primary.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { closedPort } from './helpers.js';

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops it (SIGKILL: no save, no goodbye); without persistence its data is gone. */
  stop(): Promise<void>;
  /** Starts it again on the same port: empty, or with what its append-only file kept; as a replica of `replicaOf` when given. */
  start(replicaOf?: number): Promise<void>;
  /** SIGSTOP: it keeps its sockets open and answers nothing (a hung Redis). */
  pause(): void;
  /** SIGCONT: it answers again, what it held included. */
  resume(): void;
  /** its process id while it runs */
  readonly pid: number | undefined;
}

export interface RedisOptions {
  /** appendonly yes, appendfsync always, in a folder of its own: a restart keeps what was acknowledged */
  readonly persist?: boolean;
  /** a replica of the server on this port */
  readonly replicaOf?: number;
  /**
   * Listen on a unix socket in a folder of its own (url is its path), not on a
   * port: a test that keeps it stopped for long must not find another
   * process's server on its port when it starts it again (two test runs at once).
   */
  readonly socket?: boolean;
}

function reachable(port: number | string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = typeof port === 'string' ? connect(port) : connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function until(port: number | string, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await reachable(port)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what} did not start on ${port} (is Debian's redis-server installed?)`);
}

function killer(get: () => ChildProcess | undefined): () => Promise<void> {
  return async () => {
    const c = get();
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
}

export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const port = options.socket === true ? 0 : await closedPort();
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-redis-'));
  const socket = join(dir, 'redis.sock');
  const args = (replicaOf: number | undefined): string[] => [
    '--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'no', '--dir', dir, '--save', '',
    ...(options.socket === true ? ['--unixsocket', socket, '--unixsocketperm', '700'] : []),
    // A replica that (re)joins is sent the data at once, not after the 5 s Redis waits for others to join.
    '--repl-diskless-sync-delay', '0',
    ...(options.persist === true ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
    ...(replicaOf !== undefined ? ['--replicaof', '127.0.0.1', String(replicaOf)] : []),
  ];
  let child: ChildProcess | undefined;
  const start = async (replicaOf = options.replicaOf): Promise<void> => {
    child = spawn('redis-server', args(replicaOf), { stdio: 'ignore' });
    child.on('error', () => undefined);
    await until(options.socket === true ? socket : port, 'redis-server');
  };
  await start();
  return {
    port,
    url: options.socket === true ? socket : `redis://127.0.0.1:${port}`,
    stop: killer(() => child),
    start,
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    get pid() {
      return child?.pid;
    },
  };
}

export interface Sentinel {
  readonly port: number;
  stop(): Promise<void>;
}

/** A redis-sentinel watching the primary on `primaryPort` as `name`; quick to call it down (1 s) and fail over. */
export async function startSentinel(primaryPort: number, name: string, quorum: number): Promise<Sentinel> {
  const port = await closedPort();
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-sentinel-'));
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      'protected-mode no',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${primaryPort} ${quorum}`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      `sentinel parallel-syncs ${name} 1`,
      '',
    ].join('\n'),
  );
  const child = spawn('redis-sentinel', [conf], { stdio: 'ignore' });
  child.on('error', () => undefined);
  await until(port, 'redis-sentinel');
  return { port, stop: killer(() => child) };
}

/** Resolves once the server on `primaryPort` has a replica in sync (INFO replication: state=online). */
export async function replicaOnline(primaryPort: number): Promise<void> {
  const client = new Redis(primaryPort, '127.0.0.1');
  try {
    for (let i = 0; i < 400; i++) {
      if (/^slave0:.*state=online/m.test(await client.info('replication'))) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no replica of ${primaryPort} came online`);
  } finally {
    client.disconnect();
  }
}

/** Where the sentinel on `port` says the primary of `name` is now (its port). */
export async function primaryOf(port: number, name: string): Promise<number> {
  const client = new Redis(port, '127.0.0.1');
  try {
    const [, primary] = (await client.call('SENTINEL', 'get-master-addr-by-name', name)) as [string, string];
    return Number(primary);
  } finally {
    client.disconnect();
  }
}
