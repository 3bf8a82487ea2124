// Starting and measuring the separate processes of the bench: sinks, the
// service, the no-op floor server, and load processes.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { BenchPki } from './pki.js';
import { V8_FLAGS } from '../src/runtime-flags.js';
import type { ChildMessage, LoadResult } from './common.js';
import { BENCH_AUTH, BENCH_MAIL, freePort, procCpuMicros, procCpuSplit, procRssMb } from './common.js';
import type { SinkReply } from './sink.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** the repository root: dist/bench/.. /.. */
export const ROOT = join(HERE, '..', '..');
export const SMTP_SINK = '/usr/sbin/smtp-sink';

const children = new Set<ChildProcess>();
/** Kills every child this process started (by its own handle), on any exit. */
export function killChildren(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
}
process.on('exit', killChildren);

function track<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

function firstMessage<T>(child: ChildProcess, pred: (m: T) => boolean, what: string, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
    const onMsg = (m: T): void => {
      if (!pred(m)) return;
      cleanup();
      resolve(m);
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`${what}: exited with ${code}`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMsg);
      child.off('exit', onExit);
    };
    child.on('message', onMsg);
    child.once('exit', onExit);
  });
}

export interface Sink {
  readonly kind: 'node-tls' | 'node-plain' | 'smtp-sink';
  readonly port: number;
  readonly pid: number;
  /** messages the sink itself has accepted so far */
  count(): Promise<number>;
  stop(): Promise<void>;
}

/** `dataDelayMs`: a slow relay, holding each message's 250 that long; `chunking`: it offers CHUNKING. */
export async function startNodeSink(pki: BenchPki | undefined, dataDelayMs = 0, chunking = false): Promise<Sink> {
  const opts = { ...(pki !== undefined ? { tls: pki.server, auth: BENCH_AUTH } : {}), dataDelayMs, chunking };
  const child = track(fork(join(HERE, 'sink.js'), [JSON.stringify(opts)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const { port } = await firstMessage<SinkReply>(child, (m) => m.type === 'listening', 'sink') as Extract<SinkReply, { type: 'listening' }>;
  return {
    kind: pki !== undefined ? 'node-tls' : 'node-plain',
    port,
    pid: child.pid as number,
    async count() {
      const p = firstMessage<SinkReply>(child, (m) => m.type === 'count', 'sink count');
      child.send({ type: 'count' });
      return ((await p) as Extract<SinkReply, { type: 'count' }>).accepted;
    },
    stop: () => stopChild(child),
  };
}

/**
 * The sink `rttMs` away: a delay proxy in front of it (bench/delay-proxy.ts),
 * so that senders reach it at the proxy's port and pay the round trip on
 * every exchange, TLS handshake included. Counts are still the sink's own.
 */
export async function atDistance(sink: Sink, rttMs: number): Promise<Sink> {
  if (rttMs === 0) return sink;
  const child = track(fork(join(HERE, 'delay-proxy.js'), [JSON.stringify({ target: sink.port, rttMs })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const { port } = await firstMessage<{ type: string; port: number }>(child, (m) => m.type === 'listening', 'delay proxy');
  return {
    ...sink,
    port,
    stop: async () => {
      await stopChild(child);
      await sink.stop();
    },
  };
}

/** Postfix's smtp-sink (C, plain SMTP only): counts from its -c counter line "sess=.. quit=.. mesg=N". */
export async function startSmtpSink(): Promise<Sink | undefined> {
  if (!existsSync(SMTP_SINK)) return undefined;
  const port = await freePort();
  const child = track(spawn(SMTP_SINK, ['-c', ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), `127.0.0.1:${port}`, '1024'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let last = 0;
  let text = '';
  child.stdout?.setEncoding('latin1');
  child.stdout?.on('data', (d: string) => {
    text = (text + d).slice(-200);
    const all = [...text.matchAll(/mesg=(\d+)/g)];
    const m = all[all.length - 1];
    if (m) last = Number(m[1]);
  });
  await waitForPort(port, 10_000);
  return {
    kind: 'smtp-sink',
    port,
    pid: child.pid as number,
    async count() {
      // the counter is printed as messages end; let the last update arrive
      await new Promise((r) => setTimeout(r, 100));
      return last;
    },
    stop: () => stopChild(child),
  };
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ServiceProc {
  readonly port: number;
  readonly pid: number;
  cpuMicros(): number;
  rssMb(): number;
  stop(): Promise<void>;
}


export interface ServiceStart {
  readonly workers: number;
  readonly pki?: BenchPki;
  readonly extraEnv?: Record<string, string>;
  readonly profileDir?: string;
  /** a checkout with its own built dist/ (an A/B baseline); default: this one */
  readonly root?: string;
  /** more node arguments (a probe to --import) */
  readonly nodeArgs?: readonly string[];
}

/** mailroom as it runs in production: built output, JSON logs at warn, configured by env. */
export async function startService(sink: Sink, opts: ServiceStart): Promise<ServiceProc> {
  const port = await freePort();
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    DOTENV_PATH: '/dev/null',
    NODE_ENV: 'production',
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    LOG_FORMAT: 'json',
    WORKERS: String(opts.workers),
    EMAIL_HOST: '127.0.0.1',
    EMAIL_PORT: String(sink.port),
    EMAIL_FROM: BENCH_MAIL.from,
    // An outbox of its own: parties of one run must not share one.
    OUTBOX_PATH: join(mkdtempSync(join(tmpdir(), 'mailroom-bench-outbox-')), 'outbox.db'),
    // The bench measures how fast the service goes, not its abuse caps.
    OTP_MAX_CHECKS_PER_SECOND: '0',
    OTP_MAX_SENDS_PER_MINUTE: '0',
    ...(opts.pki !== undefined
      ? { EMAIL_TLS: 'implicit', EMAIL_CA_FILE: opts.pki.caFile, EMAIL: BENCH_AUTH.user, APP_PASSWORD: BENCH_AUTH.pass }
      : { EMAIL_TLS: 'none' }),
    ...opts.extraEnv,
  };
  const nodeArgs = [...V8_FLAGS, ...(opts.nodeArgs ?? []), ...(opts.profileDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', opts.profileDir] : [])];
  const root = opts.root ?? ROOT;
  const child = track(spawn(process.execPath, [...nodeArgs, join(root, 'dist', 'src', 'main.js')], { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] }));
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`mailroom exited with ${code}: ${stderr}`))));
  exited.catch(() => undefined);
  await Promise.race([waitForPort(port, 60_000), exited]);
  const pid = child.pid as number;
  return {
    port,
    pid,
    cpuMicros: () => procCpuMicros(pid),
    rssMb: () => procRssMb(pid),
    stop: () => stopChild(child, 'SIGTERM', 15_000),
  };
}

/**
 * The Go service mailroom replaces (SEED_BIN: built by
 * ../shared/tools/build-seed.sh, never part of this repository), against
 * the same sink: implicit TLS, AUTH PLAIN, WORKERS connections. It trusts
 * the system's CAs only, so the bench CA goes in through SSL_CERT_FILE.
 */
export async function startSeed(bin: string, sink: Sink, opts: { readonly workers: number; readonly pki: BenchPki }): Promise<ServiceProc> {
  const port = await freePort();
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    PORT: String(port),
    WORKERS: String(opts.workers),
    EMAIL: BENCH_AUTH.user,
    APP_PASSWORD: BENCH_AUTH.pass,
    EMAIL_HOST: '127.0.0.1',
    EMAIL_PORT: String(sink.port),
    SSL_CERT_FILE: opts.pki.caFile,
  };
  const child = track(spawn(bin, [], { cwd: dirname(bin), env, stdio: ['ignore', 'ignore', 'ignore'] }));
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`${bin} exited with ${code}`))));
  exited.catch(() => undefined);
  await Promise.race([waitForPort(port, 30_000), exited]);
  const pid = child.pid as number;
  return { port, pid, cpuMicros: () => procCpuMicros(pid), rssMb: () => procRssMb(pid), stop: () => stopChild(child) };
}

export interface NoopServer {
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
}

/** `answerAfterMs`: the no-op answers after a timer of this many ms instead of at once. */
export async function startNoopServer(answerAfterMs = 0): Promise<NoopServer> {
  const child = track(fork(join(HERE, 'noop-server.js'), [String(answerAfterMs)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const { port } = await firstMessage<{ type: string; port: number }>(child, (m) => m.type === 'listening', 'noop server');
  return { port, pid: child.pid as number, stop: () => stopChild(child) };
}

/** One measured run of a load process, with the sink and the server read at its edges. */
export interface Measured extends LoadResult {
  /** messages the sink accepted during the measured phase (SendMail and nodemailer runs) */
  readonly sinkAccepted: number | undefined;
  /** server CPU during the measured phase, µs */
  readonly serverCpuMicros: number | undefined;
  /** the kernel's share of it (system time), µs */
  readonly serverSysMicros: number | undefined;
  /** highest server RSS sampled during the measured phase */
  readonly serverRssMb: number | undefined;
  /** the sink's CPU during the measured phase, µs: what each sender costs the relay */
  readonly sinkCpuMicros: number | undefined;
}

export async function measure(script: 'loadgen.js' | 'nodemailer-runner.js' | 'bare-smtp-runner.js', options: object, edges: { sink?: Sink; serverPid?: number }): Promise<Measured> {
  const child = track(fork(join(HERE, script), [JSON.stringify(options)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  let sink0 = 0;
  let cpu0 = 0;
  let sys0 = 0;
  let sinkCpu0 = 0;
  let rssMax = 0;
  let sampler: NodeJS.Timeout | undefined;
  const pid = edges.serverPid;
  const sample = (): void => {
    if (pid !== undefined) rssMax = Math.max(rssMax, procRssMb(pid));
  };
  const done = new Promise<LoadResult>((resolve, reject) => {
    child.on('message', (m: ChildMessage) => {
      if (m.type === 'warm') {
        void (async () => {
          sink0 = edges.sink !== undefined ? await edges.sink.count() : 0;
          cpu0 = pid !== undefined ? procCpuMicros(pid) : 0;
          sys0 = pid !== undefined ? procCpuSplit(pid).system : 0;
          sinkCpu0 = edges.sink !== undefined ? procCpuMicros(edges.sink.pid) : 0;
          sampler = setInterval(sample, 100);
          child.send({ type: 'go' });
        })().catch(reject);
      } else if (m.type === 'done') resolve(m.result);
      else if (m.type === 'failed') reject(new Error(`${script}: ${m.error}`));
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before reporting`)));
  });
  try {
    const result = await done;
    const cpu1 = pid !== undefined ? procCpuMicros(pid) : 0;
    const sys1 = pid !== undefined ? procCpuSplit(pid).system : 0;
    const sinkCpu1 = edges.sink !== undefined ? procCpuMicros(edges.sink.pid) : 0;
    sample();
    const sinkAccepted = edges.sink !== undefined ? (await edges.sink.count()) - sink0 : undefined;
    return {
      ...result,
      sinkAccepted,
      serverCpuMicros: pid !== undefined ? cpu1 - cpu0 : undefined,
      serverSysMicros: pid !== undefined ? sys1 - sys0 : undefined,
      serverRssMb: pid !== undefined ? rssMax : undefined,
      sinkCpuMicros: edges.sink !== undefined ? sinkCpu1 - sinkCpu0 : undefined,
    };
  } finally {
    if (sampler !== undefined) clearInterval(sampler);
    await stopChild(child, 'SIGKILL', 1000);
  }
}
