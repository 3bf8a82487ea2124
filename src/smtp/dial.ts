// Dialling the relay: TCP (or implicit TLS) connect, greeting, EHLO,
// STARTTLS where configured, AUTH where configured. emailjs's
// SMTPConnection speaks the handshake; each step runs under a deadline of
// its own (command.ts). What comes out is a session that reads its own
// replies from then on (session.ts).
import type { TLSSocket } from 'node:tls';
import { MailroomError } from '../errors.js';
import { command } from './command.js';
import { Link } from './link.js';
import type { SessionOptions } from './options.js';
import { PooledConnection } from './pooled-connection.js';
import { SmtpSession } from './session.js';
import { resumeSession, tlsOptionsFor } from './tls.js';

export async function dial(options: SessionOptions, signal?: AbortSignal): Promise<SmtpSession> {
  const conn = new PooledConnection({
    host: options.host,
    port: options.port,
    ssl: options.tls === 'implicit' ? tlsOptionsFor(options, 'at-tcp-connect') : false,
    tls: false,
    domain: options.heloName,
    user: options.user,
    password: options.password,
    // PLAIN first: one round trip, and the channel is encrypted or the operator chose `none`.
    authentication: ['PLAIN', 'LOGIN', 'CRAM-MD5'],
    timeout: options.connectTimeoutMs + options.greetingTimeoutMs,
  });
  const link = new Link(() => conn.close(true));
  const onAbort = (): void => link.destroy();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await open(conn, link, options);
    if (options.tls === 'starttls') {
      await command(link, 'ehlo', options.commandTimeoutMs, (done) => conn.ehlo(done));
      if (!conn.has_extn('starttls')) {
        throw new MailroomError('ETLS', 'the SMTP relay does not offer STARTTLS (set EMAIL_TLS=none to send in plain text)');
      }
      await command(link, 'starttls', options.commandTimeoutMs, (done) => conn.command('STARTTLS', done, [220]));
      await command(link, 'starttls', options.connectTimeoutMs, (done) => conn.upgrade(tlsOptionsFor(options, 'in-connect'), options.tlsSessions, done));
      link.watch(conn.socket());
    }
    if (options.user !== undefined) {
      // login() runs EHLO itself when no features are known.
      await command(link, 'auth', options.commandTimeoutMs, (done) => conn.login(done));
    } else {
      await command(link, 'ehlo', options.commandTimeoutMs, (done) => conn.ehlo(done));
    }
    if (signal?.aborted === true) throw new MailroomError('ECONNECTION', 'dial aborted');
    const pipelining = conn.has_extn('pipelining');
    return new SmtpSession(link, conn.release(), options, { pipelining });
  } catch (err) {
    link.destroy();
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** The TCP (or TLS) connect and the relay's greeting, each under its own deadline. */
async function open(conn: PooledConnection, link: Link, options: SessionOptions): Promise<void> {
  let connectTimer: NodeJS.Timeout | undefined;
  try {
    await command(link, 'greeting', options.connectTimeoutMs + options.greetingTimeoutMs, (done, restart) => {
      conn.connect(done);
      const sock = conn.socket();
      if (sock === null) return;
      // TRAP: emailjs never sets TCP_NODELAY; Nagle plus delayed ACK then
      // costs ~40 ms on every command round trip.
      sock.setNoDelay(true);
      if (options.tls === 'implicit') resumeSession(sock as TLSSocket, options.tlsSessions);
      // TRAP: emailjs's `timeout` is a socket inactivity timer that also kills
      // idle pooled connections. It stays only until the TCP connect; after
      // that every command carries its own deadline and keepalive uses NOOP.
      // The connect and the greeting have deadlines of their own.
      connectTimer = setTimeout(() => {
        link.destroy(new MailroomError('ETIMEDOUT', `no TCP connection to the SMTP relay within ${options.connectTimeoutMs} ms`));
      }, options.connectTimeoutMs);
      sock.once('connect', () => {
        clearTimeout(connectTimer);
        sock.setTimeout(0);
        // the greeting's clock starts at the connect
        restart(options.greetingTimeoutMs);
      });
      link.watch(sock);
    });
  } finally {
    clearTimeout(connectTimer);
  }
}
