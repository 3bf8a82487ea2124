// Dialling the relay: TCP (or implicit TLS) connect, greeting, EHLO,
// STARTTLS where configured, AUTH where configured. Every step has its own
// deadline and every reply goes through the session's bounded reader
// (reply-reader.ts), the greeting included: a relay that floods the
// handshake ends its own connection, never the process.
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { MailroomError, toMailroomError, type SmtpReply } from '../errors.js';
import { authSteps, chooseMechanism, parseEhlo, withoutText } from './handshake.js';
import { Link } from './link.js';
import type { SessionOptions } from './options.js';
import { parseReplyLines, replyError, type SmtpStage } from './reply.js';
import { SmtpSession } from './session.js';
import { keepSessions, resumeSession, tlsOptionsFor } from './tls.js';

const TLS_ERROR = /CERT|SELF_SIGNED|ERR_TLS|ERR_SSL|UNABLE_TO|HOSTNAME|ssl|handshake|alert/i;

/** The step of the handshake a dial failed at, as an operator would name it. */
type DialStep = 'connect' | 'TLS' | 'greeting' | 'EHLO' | 'STARTTLS' | 'AUTH';

/** A dial's failure says at which step it failed ("greeting: connection closed by the SMTP relay"), unless it says so already. */
function namedFor(step: DialStep, err: MailroomError): MailroomError {
  if (new RegExp(`\\b${step}\\b`, 'i').test(err.message)) return err;
  return new MailroomError(err.code, `${step}: ${err.message}`, { cause: err, smtp: err.smtp });
}

/** Dial failures that say the relay is not there or will not have us, as opposed to a handshake cut short. */
const refusals = new WeakSet<MailroomError>();

/**
 * Whether a dial failed because the relay cannot be reached (no TCP
 * connection: refused, unreachable, unknown host, no answer) or refused us
 * outright (a certificate we do not trust, credentials it does not take, a
 * 5xx greeting). A drop, reset or stall halfway through the handshake, or a
 * 4xx, is not: the next dial may well get through.
 */
export function relayRefused(err: unknown): boolean {
  return err instanceof MailroomError && refusals.has(err);
}

export async function dial(options: SessionOptions, signal?: AbortSignal): Promise<SmtpSession> {
  let sock: Socket | TLSSocket | undefined;
  const link = new Link();
  const onAbort = (): void => link.destroy(new MailroomError('ECONNECTION', 'dial aborted'));
  signal?.addEventListener('abort', onAbort, { once: true });
  let step: DialStep = 'connect';
  try {
    sock = await connect(options, link);
    let session = new SmtpSession(link, sock, options);
    step = 'greeting';
    const greeting = await session.expect('greeting', options.greetingTimeoutMs, 1);
    expectCode(greeting[0] as SmtpReply, 220, 'greeting');
    step = 'EHLO';
    await ehlo(session);
    if (options.tls === 'starttls') {
      step = 'STARTTLS';
      if (!session.features.starttls) {
        throw new MailroomError('ETLS', 'the SMTP relay does not offer STARTTLS (set EMAIL_TLS=none to send in plain text)');
      }
      expectCode(await session.exchange('starttls', options.commandTimeoutMs, 'STARTTLS\r\n'), 220, 'starttls');
      session.detach();
      step = 'TLS';
      sock = await upgrade(sock, options, link);
      session = new SmtpSession(link, sock, options);
      step = 'EHLO';
      await ehlo(session);
    }
    step = 'AUTH';
    if (options.user !== undefined) await authenticate(session, options.user, options.password ?? '');
    if (signal?.aborted === true) throw new MailroomError('ECONNECTION', 'dial aborted');
    return session;
  } catch (err) {
    const error = err instanceof MailroomError ? err : (link.lost ?? toMailroomError(err));
    link.destroy(error);
    const named = namedFor(step, error);
    if (refusals.has(error) || error.code === 'ETLS' || error.code === 'EAUTH' || error.code === 'ESMTP_PERMANENT') refusals.add(named);
    throw named;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** The TCP connect, and for implicit TLS the TLS handshake too, each failure named for its step. */
function connect(options: SessionOptions, link: Link): Promise<Socket | TLSSocket> {
  return new Promise((resolve, reject) => {
    const implicit = options.tls === 'implicit';
    const sock = implicit ? tlsConnect({ ...tlsOptionsFor(options, 'at-tcp-connect'), port: options.port }) : tcpConnect(options.port, options.host);
    // TRAP: Node leaves TCP_NODELAY off; Nagle plus delayed ACK then costs
    // ~40 ms on every command round trip.
    sock.setNoDelay(true);
    if (implicit) resumeSession(sock as TLSSocket, options.tlsSessions);
    let connected = false;
    const timer = setTimeout(() => {
      const error = new MailroomError('ETIMEDOUT', `connect: no TCP connection to the SMTP relay within ${options.connectTimeoutMs} ms`);
      if (!connected) refusals.add(error);
      link.destroy(error);
    }, options.connectTimeoutMs);
    const unsubscribe = link.onLost((err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      if (!connected) {
        const error = new MailroomError('ECONNECTION', err.message, { cause: err });
        refusals.add(error);
        link.destroy(error);
      }
      else link.destroy(implicit && TLS_ERROR.test(`${err.code ?? ''} ${err.message}`) ? tlsError(err) : new MailroomError('ECONNECTION', `SMTP connection: ${err.message}`, { cause: err }));
    });
    const done = (): void => {
      unsubscribe();
      resolve(sock);
    };
    sock.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      if (!implicit) done();
    });
    // The TLS handshake counts toward the greeting's deadline, which starts at the TCP connect.
    if (implicit) sock.once('secureConnect', done);
    link.watch(sock);
  });
}

/** STARTTLS: the TLS handshake over the connected socket, verifying the relay's certificate like any TLS connect. */
function upgrade(plain: Socket | TLSSocket, options: SessionOptions, link: Link): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tlsConnect({ ...tlsOptionsFor(options, 'in-connect'), socket: plain });
    secure.setNoDelay(true);
    keepSessions(secure, options.tlsSessions);
    const timer = setTimeout(() => link.destroy(new MailroomError('ETIMEDOUT', `no TLS handshake with the SMTP relay within ${options.connectTimeoutMs} ms`)), options.connectTimeoutMs);
    const unsubscribe = link.onLost((err) => {
      clearTimeout(timer);
      reject(err);
    });
    // Only a failed handshake is a TLS failure; a reset later is the connection's loss (link.watch names it).
    const failed = (err: Error): void => link.destroy(tlsError(err));
    secure.once('error', failed);
    secure.once('secureConnect', () => {
      secure.off('error', failed);
      clearTimeout(timer);
      unsubscribe();
      resolve(secure);
    });
    link.watch(secure);
  });
}

async function ehlo(session: SmtpSession): Promise<void> {
  const { options } = session;
  const replies = session.expectLines('ehlo', options.commandTimeoutMs, 1);
  session.write(`EHLO ${options.heloName}\r\n`);
  const lines = (await replies)[0] as string[];
  expectCode(parseReplyLines(lines) as SmtpReply, 250, 'ehlo');
  session.features = parseEhlo(lines);
}

/** AUTH with the first mechanism both sides speak. No reply text reaches an error: it may echo the credential. */
async function authenticate(session: SmtpSession, user: string, password: string): Promise<void> {
  const mechanism = chooseMechanism(session.features.auth);
  if (mechanism === undefined) {
    throw new MailroomError('EAUTH', `the SMTP relay offers no AUTH mechanism mailroom speaks (it offers: ${session.features.auth.join(' ') || 'none'})`);
  }
  let challenge = '';
  for (const step of authSteps(mechanism, user, password)) {
    const reply = await session.exchange('auth', session.options.commandTimeoutMs, `${step.line(challenge)}\r\n`);
    if (reply.code === 235) return; // some relays accept before the last step
    if (reply.code !== step.expect) throw replyError(withoutText(reply), 'auth');
    challenge = reply.text;
  }
}

function expectCode(reply: SmtpReply, code: number, stage: SmtpStage): void {
  if (reply.code !== code) throw replyError(reply, stage);
}

function tlsError(err: Error): MailroomError {
  return new MailroomError('ETLS', `TLS with the SMTP relay failed: ${err.message}`, { cause: err });
}
