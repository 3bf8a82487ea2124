// Shared test peers: a real SMTP server (smtp-server), the real service booted
// in-process on port 0, real gRPC clients, and a throwaway test CA.
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { waitFor } from 'xstate';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { boot, type BootOptions, type Service } from '../src/boot.js';
import { makePki, type Pki } from './pki.js';
import { createLogger, type Logger } from '../src/log.js';
import type { LogLevel } from '../src/log.js';
import { loadMailProto } from '../src/rpc/proto.js';
import type { MailServiceClient } from '../src/generated/mail/MailService.js';
import type { OtpServiceClient } from '../src/generated/mail/OtpService.js';
import type { SendEmailRequest } from '../src/generated/mail/SendEmailRequest.js';
import type { SendEmailResponse__Output } from '../src/generated/mail/SendEmailResponse.js';
import type { SendCodeResponse__Output } from '../src/generated/mail/SendCodeResponse.js';
import type { ValidateCodeResponse__Output } from '../src/generated/mail/ValidateCodeResponse.js';
import { FaultPeer, type FaultPeerOptions } from './fault-peer.js';
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { V8_FLAGS } from '../src/runtime-flags.js';

export { once };

export interface ReceivedMail {
  readonly from: string;
  readonly to: string[];
  readonly raw: string;
  /** the id of the SMTP connection that carried it */
  readonly connection: string;
  readonly user: string | undefined;
  /** the session was TLS (implicit or upgraded) when the message arrived */
  readonly secure: boolean;
}

/** One AUTH attempt as the server saw it. */
export interface AuthAttempt {
  readonly user: string;
  readonly ok: boolean;
  /** the session was already TLS when AUTH came */
  readonly secure: boolean;
  readonly method: string;
}

export interface SmtpPeer {
  readonly port: number;
  readonly messages: ReceivedMail[];
  /** connection ids seen by the server, in order of arrival (after the handshake for implicit TLS) */
  readonly connections: string[];
  /** TCP connections accepted, handshake or not */
  readonly dials: number;
  readonly authFailures: number;
  readonly authAttempts: AuthAttempt[];
  /** messages read to the final dot and not yet answered: with dataDelayMs, what the relay holds now */
  readonly holding: number;
  /** resolves once at least n messages were accepted */
  waitForMessages(n: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  close(): Promise<void>;
}

export interface SmtpPeerOptions {
  /** implicit TLS with this key and certificate */
  readonly secure?: { key: string; cert: string };
  /** offer STARTTLS with this key and certificate */
  readonly starttls?: { key: string; cert: string };
  /** require AUTH with these credentials */
  readonly auth?: { user: string; pass: string };
  /** the AUTH mechanisms offered; default PLAIN and LOGIN */
  readonly authMethods?: string[];
  /** hold each 250 to the final dot this long (a slow relay) */
  readonly dataDelayMs?: number;
  /** extra smtp-server options (onRcptTo refusals and the like) */
  readonly extra?: Partial<SMTPServerOptions>;
  /** a port of the test's choosing (one a service was pointed at before the relay came up); default: the OS picks */
  readonly port?: number;
}

/** smtp-server options under which the peer refuses (550 5.1.1) every recipient whose address starts with `prefix`. */
export function refusingRecipients(prefix: string): Partial<SMTPServerOptions> {
  return {
    onRcptTo(address, _session, cb) {
      if (address.address.startsWith(prefix)) cb(Object.assign(new Error('5.1.1 no such user'), { responseCode: 550 }));
      else cb();
    },
  };
}

export async function startSmtp(options: SmtpPeerOptions = {}): Promise<SmtpPeer> {
  const messages: ReceivedMail[] = [];
  let holding = 0;
  const connections: string[] = [];
  let authFailures = 0;
  const authAttempts: AuthAttempt[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const tls = options.secure ?? options.starttls;
  const server = new SMTPServer({
    logger: false,
    secure: options.secure !== undefined,
    // A reverse DNS lookup per connection only delays the greeting on loopback.
    disableReverseLookup: true,
    ...(tls !== undefined ? { key: tls.key, cert: tls.cert } : {}),
    hideSTARTTLS: options.starttls === undefined,
    authOptional: options.auth === undefined,
    authMethods: options.authMethods ?? ['PLAIN', 'LOGIN'],
    size: 64 * 1024 * 1024,
    onConnect(session: SMTPServerSession, cb) {
      connections.push(session.id);
      cb();
    },
    onAuth(auth, session, cb) {
      const pass = options.auth?.pass ?? '';
      const ok =
        options.auth !== undefined &&
        auth.username === options.auth.user &&
        (auth.method === 'CRAM-MD5' ? (auth.validatePassword?.(pass) ?? false) : auth.password === pass);
      authAttempts.push({ user: auth.username ?? '', ok, secure: session.secure, method: auth.method });
      if (ok) {
        cb(null, { user: auth.username });
        return;
      }
      authFailures++;
      cb(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      // Recorded only when the 250 goes out: a message counts as accepted then.
      const accept = (): void => {
        holding--;
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
          connection: session.id,
          user: typeof session.user === 'string' ? session.user : undefined,
          secure: session.secure,
        });
        for (const w of waiters.splice(0)) {
          if (messages.length >= w.n) w.resolve();
          else waiters.push(w);
        }
        cb(null, `queued as m${messages.length}`);
      };
      const delay = options.dataDelayMs ?? 0;
      stream.on('end', () => {
        holding++;
        if (delay > 0) setTimeout(accept, delay);
        else accept();
      });
    },
    ...options.extra,
  });
  server.on('error', () => undefined);
  let dials = 0;
  server.server.on('connection', () => dials++);
  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server.server, 'listening');
  return {
    port: (server.server.address() as AddressInfo).port,
    messages,
    connections,
    get dials() {
      return dials;
    },
    get authFailures() {
      return authFailures;
    },
    get holding() {
      return holding;
    },
    authAttempts,
    waitForMessages(n, timeoutMs = 10_000) {
      if (messages.length >= n) return Promise.resolve(messages);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${messages.length} of ${n} messages arrived`)), timeoutMs);
        waiters.push({ n, resolve: () => (clearTimeout(timer), resolve(messages)) });
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The service's entry point, as `npm start` runs it. */
export const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

/**
 * Starts the service as a process of its own, with the V8 flags `npm start`
 * gives it, exactly `env` (plus PATH, and no .env file), and `script` in
 * place of main.js when a test needs another entry (a fixture).
 */
export function spawnService(env: Record<string, string>, options: { script?: string; stdio?: StdioOptions } = {}): ChildProcess {
  return spawn(process.execPath, [...V8_FLAGS, options.script ?? MAIN], {
    env: { PATH: process.env.PATH ?? '', DOTENV_PATH: '/dev/null', OUTBOX_PATH: freshOutbox(), ...env },
    stdio: options.stdio ?? ['ignore', 'ignore', 'pipe'],
  });
}

export interface RunningService {
  readonly service: Service;
  readonly mail: MailServiceClient;
  readonly otp: OtpServiceClient;
  close(): Promise<void>;
}

/** One log line as the service wrote it (JSON format). */
export interface LogEntry {
  readonly level: string;
  readonly message: string;
  readonly [key: string]: unknown;
}

export interface LogRecording {
  /** the service's own JSON logger (redaction included), writing to memory */
  readonly logger: Logger;
  /** every line as written */
  readonly lines: string[];
  /** the same lines parsed */
  readonly entries: LogEntry[];
}

/** A logger like the service's own whose output at `level` or above stays in memory for assertions. */
export function recordingLogger(level: LogLevel = 'debug'): LogRecording {
  const lines: string[] = [];
  const entries: LogEntry[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      for (const line of String(chunk).split('\n')) {
        if (line.trim() === '') continue;
        lines.push(line);
        entries.push(JSON.parse(line) as LogEntry);
        if (process.env.TEST_LOGS === '1') process.stderr.write(`${line}\n`);
      }
      done();
    },
  });
  return { logger: createLogger({ level, format: 'json', stream }), lines, entries };
}

export interface ServiceOptions extends BootOptions {
  /** the service's logger; default: silent unless TEST_LOGS=1 */
  readonly log?: Logger;
}

/**
 * An outbox file of its own (in a fresh folder): tests run in parallel, and
 * services sharing one would deliver each other's messages.
 */
export function freshOutbox(): string {
  return join(mkdtempSync(join(tmpdir(), 'mailroom-outbox-')), 'outbox.db');
}

/** Boots the real service in this process on a port the OS picks. */
export async function startService(env: Record<string, string>, options: ServiceOptions = {}): Promise<RunningService> {
  const service = await boot(
    { PORT: '0', HOST: '127.0.0.1', SHUTDOWN_TIMEOUT_SECONDS: '2', OUTBOX_PATH: freshOutbox(), ...env },
    { ...options, log: options.log ?? createLogger({ level: 'error', format: 'json', silent: process.env.TEST_LOGS !== '1' }) },
  );
  const proto = loadMailProto();
  const address = `127.0.0.1:${service.port}`;
  const mail = new proto.mail.MailService(address, grpc.credentials.createInsecure());
  const otp = new proto.mail.OtpService(address, grpc.credentials.createInsecure());
  return {
    service,
    mail,
    otp,
    async close() {
      mail.close();
      otp.close();
      await service.shutdown();
    },
  };
}

/** Env that exports a service's spans to an OTLP receiver at `endpoint` over `protocol`, every 50 ms. */
export function otlpEnv(endpoint: string, protocol = 'http/json'): Record<string, string> {
  return { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: protocol, OTEL_BSP_SCHEDULE_DELAY: '50' };
}

/** Env for a service sending to a plain test relay on `port`. */
export function relayEnv(port: number, extra: Record<string, string> = {}): Record<string, string> {
  return { EMAIL_HOST: '127.0.0.1', EMAIL_PORT: String(port), EMAIL_TLS: 'none', EMAIL_FROM: 'sender@example.com', ...extra };
}

function settle<T>(resolve: (v: T) => void, reject: (e: grpc.ServiceError) => void): grpc.requestCallback<T> {
  return (err, res) => (err ? reject(err) : resolve(res as T));
}

export function sendMail(svc: RunningService, req: SendEmailRequest, opts: grpc.CallOptions = {}): Promise<SendEmailResponse__Output> {
  return new Promise((resolve, reject) => svc.mail.SendMail(req, new grpc.Metadata(), opts, settle(resolve, reject)));
}

export function sendCode(svc: RunningService, email: string, opts: grpc.CallOptions = {}): Promise<SendCodeResponse__Output> {
  return new Promise((resolve, reject) => svc.otp.SendCode({ email }, new grpc.Metadata(), opts, settle(resolve, reject)));
}

export function validateCode(svc: RunningService, email: string, otpCode: string, opts: grpc.CallOptions = {}): Promise<ValidateCodeResponse__Output> {
  return new Promise((resolve, reject) => svc.otp.ValidateCode({ email, otpCode }, new grpc.Metadata(), opts, settle(resolve, reject)));
}

/** Awaits a call that must fail; returns its gRPC error. */
export async function expectGrpcError(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('expected a gRPC error, the call succeeded');
}

export type TestPki = Pki;

let pki: TestPki | undefined;

/** The test CA, made once per test process. */
export function testPki(): TestPki {
  pki ??= makePki('test');
  return pki;
}

/** The code in the last mail `smtp` accepted for `address`, read from its text part. */
export async function codeFromMail(smtp: SmtpPeer, address: string, length = 6): Promise<string> {
  const { simpleParser } = await import('mailparser');
  const mail = smtp.messages.findLast((m) => m.to.includes(address));
  if (mail === undefined) throw new Error(`no mail for ${address}`);
  const parsed = await simpleParser(mail.raw);
  const match = new RegExp(`\\b(\\d{${length}})\\b`).exec(parsed.text ?? '');
  if (match === null) throw new Error(`no ${length}-digit code in the mail to ${address}`);
  return match[1] as string;
}

/** A metadata value of a failed call, as a string. */
export function metadataValue(err: grpc.ServiceError, key: string): string | undefined {
  const value = err.metadata?.get(key)[0];
  return value === undefined ? undefined : String(value);
}

/**
 * Env for fault tests: every timeout, backoff and keepalive short enough that a
 * fault costs tens of milliseconds, so a suite of them runs in seconds.
 */
export function faultEnv(port: number, extra: Record<string, string> = {}): Record<string, string> {
  return relayEnv(port, {
    WORKERS: '2',
    SMTP_CONNECT_TIMEOUT_MS: '500',
    SMTP_GREETING_TIMEOUT_MS: '500',
    SMTP_COMMAND_TIMEOUT_MS: '500',
    SMTP_DATA_TIMEOUT_MS: '1000',
    SMTP_KEEPALIVE_MS: '60000',
    SMTP_BACKOFF_BASE_MS: '10',
    SMTP_BACKOFF_MAX_MS: '80',
    QUEUE_TIMEOUT_MS: '5000',
    ...extra,
  });
}

/** Resolves once every connection of the pool is authenticated: the supervisor's chart is in serving.pool.up. */
export async function waitForPool(svc: RunningService, timeoutMs = 5000): Promise<void> {
  const { supervisor } = svc.service;
  try {
    await waitFor(supervisor, (s) => s.matches({ running: { delivery: { serving: { pool: 'up' } } } }), { timeout: timeoutMs });
  } catch {
    throw new Error(`the pool was not fully up within ${timeoutMs} ms`);
  }
}

/** mulberry32: a seeded PRNG, so that a randomised test names its seed and can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Resolves with what `attempt` gives once it gives something (a value, or
 * true for a condition) without throwing, trying every 20 ms for at most
 * `timeoutMs`; then fails with `what` and the last reason. The one way a
 * test waits for a condition: no fixed sleeps, no hand-rolled loops.
 */
export async function eventually<T>(attempt: () => T | Promise<T>, timeoutMs: number, what: string): Promise<Exclude<T, false | undefined>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await attempt();
      if (value !== false && value !== undefined) return value as Exclude<T, false | undefined>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= end) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${last instanceof Error ? last.message : String(last)})`);
    await sleep(20);
  }
}

/** A loopback port nothing listens on (the OS handed it out and it was closed again). */
export async function closedPort(): Promise<number> {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface Rig {
  readonly peer: FaultPeer;
  readonly svc: RunningService;
}

/**
 * A fault peer and a service that sends through it, both closed when the test
 * ends (service first, so that its QUITs reach the peer).
 */
export async function startRig(
  t: { after: (fn: () => Promise<void>) => void },
  peerOptions: FaultPeerOptions = {},
  env: Record<string, string> = {},
  serviceOptions: ServiceOptions = {},
): Promise<Rig> {
  const peer = await FaultPeer.start(peerOptions);
  let svc: RunningService;
  try {
    svc = await startService(faultEnv(peer.port, env), serviceOptions);
  } catch (err) {
    await peer.close();
    throw err;
  }
  t.after(async () => {
    await svc.close();
    await peer.close();
  });
  return { peer, svc };
}

let serial = 0;
/** A small valid request with a unique subject, to find it at the peer. */
export function mail(label = 'm'): SendEmailRequest & { subject: string } {
  serial += 1;
  return { to: 'rcpt@example.com', subject: `${label}-${process.pid}-${serial}`, body: `body of ${label} ${serial}` };
}
