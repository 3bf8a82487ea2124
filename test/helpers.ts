// Shared test peers: a real SMTP server (smtp-server), the real service booted
// in-process on port 0, real gRPC clients, and a throwaway test CA.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { boot, type Service } from '../src/boot.js';
import { createLogger, type Logger } from '../src/log.js';
import { loadMailProto } from '../src/rpc/proto.js';
import type { MailServiceClient } from '../src/generated/mail/MailService.js';
import type { OtpServiceClient } from '../src/generated/mail/OtpService.js';
import type { SendEmailRequest } from '../src/generated/mail/SendEmailRequest.js';
import type { SendEmailResponse__Output } from '../src/generated/mail/SendEmailResponse.js';
import type { SendCodeResponse__Output } from '../src/generated/mail/SendCodeResponse.js';
import type { ValidateCodeResponse__Output } from '../src/generated/mail/ValidateCodeResponse.js';

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
  /** hold each 250 to the final dot this long (a slow relay) */
  readonly dataDelayMs?: number;
  /** extra smtp-server options (onRcptTo refusals and the like) */
  readonly extra?: Partial<SMTPServerOptions>;
}

export async function startSmtp(options: SmtpPeerOptions = {}): Promise<SmtpPeer> {
  const messages: ReceivedMail[] = [];
  const connections: string[] = [];
  let authFailures = 0;
  const authAttempts: AuthAttempt[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const tls = options.secure ?? options.starttls;
  const server = new SMTPServer({
    logger: false,
    secure: options.secure !== undefined,
    ...(tls !== undefined ? { key: tls.key, cert: tls.cert } : {}),
    hideSTARTTLS: options.starttls === undefined,
    authOptional: options.auth === undefined,
    authMethods: ['PLAIN', 'LOGIN'],
    size: 64 * 1024 * 1024,
    onConnect(session: SMTPServerSession, cb) {
      connections.push(session.id);
      cb();
    },
    onAuth(auth, session, cb) {
      const ok = options.auth !== undefined && auth.username === options.auth.user && auth.password === options.auth.pass;
      authAttempts.push({ user: auth.username ?? '', ok, secure: session.secure });
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
      stream.on('end', () => (delay > 0 ? setTimeout(accept, delay) : accept()));
    },
    ...options.extra,
  });
  server.on('error', () => undefined);
  let dials = 0;
  server.server.on('connection', () => dials++);
  server.listen(0, '127.0.0.1');
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

export interface RunningService {
  readonly service: Service;
  readonly mail: MailServiceClient;
  readonly otp: OtpServiceClient;
  close(): Promise<void>;
}

/** Boots the real service in this process on a port the OS picks; `log` replaces the silenced test logger. */
export async function startService(env: Record<string, string>, options: { log?: Logger } = {}): Promise<RunningService> {
  const service = await boot(
    { PORT: '0', HOST: '127.0.0.1', SHUTDOWN_TIMEOUT_SECONDS: '2', ...env },
    { log: options.log ?? createLogger({ level: 'error', format: 'json', silent: process.env.TEST_LOGS !== '1' }) },
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

export interface TestPki {
  readonly caFile: string;
  readonly ca: string;
  /** key and certificate for 127.0.0.1 and localhost, signed by the CA */
  readonly server: { key: string; cert: string };
  /** a self-signed pair no client trusts */
  readonly untrusted: { key: string; cert: string };
}

let pki: TestPki | undefined;

/** A throwaway CA made with openssl, once per test process. */
export function testPki(): TestPki {
  if (pki !== undefined) return pki;
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-pki-'));
  const ssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  };
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=mailroom test CA');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext');
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.pem', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1');
  const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
  pki = {
    caFile: join(dir, 'ca.pem'),
    ca: read('ca.pem'),
    server: { key: read('server.key'), cert: read('server.pem') },
    untrusted: { key: read('rogue.key'), cert: read('rogue.pem') },
  };
  return pki;
}

export interface LogCapture {
  /** the real JSON logger (redaction included), at debug */
  readonly log: Logger;
  /** every line written so far, as written */
  readonly lines: string[];
  /** the lines parsed */
  entries(): Record<string, unknown>[];
}

/** A logger like the service's own whose output stays in memory for assertions. */
export function captureLogs(): LogCapture {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      lines.push(...String(chunk).split('\n').filter((l) => l !== ''));
      done();
    },
  });
  return {
    log: createLogger({ level: 'debug', format: 'json', stream }),
    lines,
    entries: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
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
