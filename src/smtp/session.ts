// A promise-shaped, fault-tolerant wrapper around one emailjs SMTPConnection.
// emailjs 5 has traps that this file and pooled-connection.ts exist to close, each marked TRAP.
import type { Socket } from 'node:net';
import type { TLSSocket, SecureContext } from 'node:tls';
import type { TlsMode } from '../config.js';
import { MailroomError, type SmtpReply } from '../errors.js';
import { parseSmtpReply, replyError, type SmtpStage } from './reply.js';
import { type ReplyReader, envelopeGroup } from './pipeline.js';
import { PooledConnection } from './pooled-connection.js';
import { resumeSession, tlsOptionsFor, type TlsSessionCache } from './tls.js';

export { TlsSessionCache, withTlsContext } from './tls.js';

export interface SessionOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: TlsMode;
  readonly ca: string | undefined;
  readonly user: string | undefined;
  readonly password: string | undefined;
  readonly heloName: string;
  readonly connectTimeoutMs: number;
  readonly greetingTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly dataTimeoutMs: number;
  /**
   * The TLS context every dial shares (see withTlsContext); without it each
   * dial builds its own from `ca`, parsing the CA file again.
   */
  readonly secureContext?: SecureContext;
  /**
   * The last TLS session the relay handed out, offered on the next dial
   * (see withTlsContext): a resumed handshake skips the certificate chain
   * on both sides, and the pool re-dials every max-messages-per-connection.
   */
  readonly tlsSessions?: TlsSessionCache;
}

export interface Envelope {
  readonly from: string;
  readonly to: readonly string[];
}

type Stage = SmtpStage;
type Callback = (err: Error | null | undefined, data?: unknown) => void;

/** emailjs's errors carry the reply in `smtp`, sometimes on the wrapped `previous` error. */
interface EmailjsError extends Error {
  smtp?: unknown;
  previous?: EmailjsError | null;
  code?: unknown;
}

const TLS_ERROR = /CERT|SELF_SIGNED|ERR_TLS|ERR_SSL|UNABLE_TO|HOSTNAME|ssl|handshake/i;

export class SmtpSession {
  private lost: MailroomError | undefined;
  /** every socket this session watched: plain, then TLS over it */
  private readonly sockets: (Socket | TLSSocket)[] = [];
  private abortPending: ((err: MailroomError) => void) | undefined;
  /** restarts the pending command's deadline */
  private rearm: ((ms: number) => void) | undefined;
  private readonly lostListeners = new Set<(err: MailroomError) => void>();
  /** reads the socket while pipelined exchanges are outstanding; emailjs reads it otherwise */
  private reader: ReplyReader | undefined;
  /** the next message's envelope group, already written behind a final dot; its replies pending */
  private primed: { envelope: Envelope; replies: Promise<string[]> } | undefined;
  /** a next envelope to be written with the payload of the delivery under way */
  private stashed: Envelope | undefined;
  /** a pipelined delivery is between its start and its payload write */
  private inEnvelope = false;
  /** a transaction may be open (MAIL sent, and neither the final dot sent nor RSET answered since) */
  private transaction = false;

  private constructor(
    private readonly conn: PooledConnection,
    private readonly options: SessionOptions,
  ) {}

  /** TCP/TLS dial, greeting, EHLO, STARTTLS where configured, AUTH where configured. */
  static async dial(options: SessionOptions, signal?: AbortSignal): Promise<SmtpSession> {
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
    const session = new SmtpSession(conn, options);
    const onAbort = (): void => session.destroy();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await session.open();
      if (options.tls === 'starttls') {
        await session.command('ehlo', options.commandTimeoutMs, (cb) => conn.ehlo(cb));
        if (!conn.has_extn('starttls')) {
          throw new MailroomError('ETLS', 'the SMTP relay does not offer STARTTLS (set EMAIL_TLS=none to send in plain text)');
        }
        await session.command('starttls', options.commandTimeoutMs, (cb) => conn.command('STARTTLS', cb, [220]));
        await session.command('starttls', options.connectTimeoutMs, (cb) => conn.upgrade(tlsOptionsFor(options, 'in-connect'), options.tlsSessions, cb));
        session.watch(conn.socket());
      }
      if (options.user !== undefined) {
        // login() runs EHLO itself when no features are known.
        await session.command('auth', options.commandTimeoutMs, (cb) => conn.login(cb));
      } else {
        await session.command('ehlo', options.commandTimeoutMs, (cb) => conn.ehlo(cb));
      }
      if (signal?.aborted) throw new MailroomError('ECONNECTION', 'dial aborted');
      return session;
    } catch (err) {
      session.destroy();
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private async open(): Promise<void> {
    const { conn, options } = this;
    let connectTimer: NodeJS.Timeout | undefined;
    try {
      await this.command('greeting', options.connectTimeoutMs + options.greetingTimeoutMs, (cb) => {
        conn.connect(cb);
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
          this.abortPending?.(new MailroomError('ETIMEDOUT', `no TCP connection to the SMTP relay within ${options.connectTimeoutMs} ms`));
          this.destroy();
        }, options.connectTimeoutMs);
        sock.once('connect', () => {
          clearTimeout(connectTimer);
          sock.setTimeout(0);
          // the greeting's clock starts at the connect
          this.rearm?.(options.greetingTimeoutMs);
        });
        this.watch(sock);
      });
    } finally {
      clearTimeout(connectTimer);
    }
  }

  /** Subscribes to the loss of this session; returns an unsubscribe function. */
  onLost(listener: (err: MailroomError) => void): () => void {
    if (this.lost !== undefined) {
      listener(this.lost);
      return () => undefined;
    }
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** Whether this session's TLS handshake resumed an earlier session (see TlsSessionCache). */
  get resumed(): boolean {
    const sock = this.conn.socket();
    return sock !== null && 'isSessionReused' in sock && sock.isSessionReused();
  }

  get isLost(): boolean {
    return this.lost !== undefined;
  }

  /** MAIL, RCPT for each recipient, DATA; resolves with the relay's reply to the final dot. */
  async deliver(envelope: Envelope, raw: string): Promise<SmtpReply> {
    const { conn, options } = this;
    if (conn.has_extn('pipelining')) return this.deliverPipelined(envelope, raw);
    this.releaseReader();
    try {
      await this.command('mail', options.commandTimeoutMs, (cb) => conn.mail(cb, `<${envelope.from}>`));
    } catch (err) {
      throw staleIfUnanswered(err);
    }
    for (const rcpt of envelope.to) {
      await this.command('rcpt', options.commandTimeoutMs, (cb) => conn.rcpt(cb, `<${rcpt}>`));
    }
    await this.command('data', options.commandTimeoutMs, (cb) => conn.data(cb));
    const reply = await this.command('data', options.dataTimeoutMs, (cb) => {
      // TRAP: emailjs writes the payload as is: no dot-stuffing (a line "."
      // would end the message early) and data_end() adds its own CRLF.
      conn.message(dotStuff(raw));
      conn.data_end(cb);
    });
    return parseSmtpReply(reply) ?? { code: 250, enhanced: undefined, text: '' };
  }

  /**
   * deliver() with RFC 2920 PIPELINING: [MAIL, RCPT…, DATA] then [payload, dot],
   * or, with the next message primed (see prime()), [payload, dot, next MAIL,
   * RCPT…, DATA], so that back-to-back messages cost one write and one round
   * trip each. Outcomes match the stepwise path: one refused recipient fails the message.
   */
  private async deliverPipelined(envelope: Envelope, raw: string): Promise<SmtpReply> {
    const { options } = this;
    const primed = this.primed;
    this.primed = undefined;
    if (primed !== undefined && primed.envelope !== envelope) {
      // The relay may be waiting for the other message's content: only dropping the connection is safe.
      this.destroy();
      throw new MailroomError('ESTALE', 'the envelope sent ahead belonged to another message');
    }
    if (primed === undefined && this.lost !== undefined) throw this.lost;
    const reader = this.takeReader();
    if (reader === undefined) throw new MailroomError('ECONNECTION', 'connection closed');
    this.transaction = true;
    this.inEnvelope = true;
    try {
      let replies: string[];
      try {
        replies = primed !== undefined ? await primed.replies : await this.exchange('mail', options.commandTimeoutMs, reader, envelopeGroup(envelope.from, envelope.to), envelope.to.length + 2);
      } catch (err) {
        throw staleIfUnanswered(err);
      }
      // RFC 2920 3.1: check every status of the group, the reply to DATA included.
      const mail = this.expectReply(replies[0]);
      let refused = mail.code === 250 ? undefined : replyError(mail, 'mail');
      let accepted = 0;
      for (let i = 1; i <= envelope.to.length; i++) {
        const rcpt = this.expectReply(replies[i]);
        if (rcpt.code === 250 || rcpt.code === 251) accepted++;
        else refused ??= replyError(rcpt, 'rcpt');
      }
      const data = this.expectReply(replies[envelope.to.length + 1]);
      if (data.code !== 354) throw refused ?? replyError(data, 'data'); // nothing to undo: RSET cleans up
      if (refused !== undefined) {
        // The relay took DATA although the envelope failed. With no recipient
        // a lone dot ends an empty transaction that goes nowhere; otherwise
        // only dropping the connection keeps a partial delivery from happening.
        if (accepted === 0 && mail.code === 250) await this.exchange('data', options.commandTimeoutMs, reader, '.\r\n', 1);
        else this.destroy();
        throw refused;
      }
      // The next message's envelope, if one was primed meanwhile, rides with this payload.
      const next = this.stashed;
      this.inEnvelope = false;
      this.stashed = undefined;
      let text = `${dotStuff(raw)}\r\n.\r\n`;
      const final = this.awaitReplies('data', options.dataTimeoutMs, reader, 1);
      if (next !== undefined) {
        this.primed = { envelope: next, replies: this.awaitPrimed(reader, next) };
        text += envelopeGroup(next.from, next.to);
      }
      this.write(text);
      // The final dot is out: whatever the relay answers to it, this
      // transaction is over, and a next envelope may follow at once (prime()).
      this.transaction = false;
      const [dot] = await final;
      const reply = this.expectReply(dot);
      if (reply.code !== 250) throw replyError(reply, 'data');
      return reply;
    } finally {
      this.inEnvelope = false;
      this.stashed = undefined;
      if (this.primed === undefined) this.releaseReader();
    }
  }

  /** Whether the next message's envelope went out ahead and waits for its deliver(). */
  get hasPrimed(): boolean {
    return this.primed !== undefined;
  }

  /**
   * Sends the next message's MAIL/RCPT/DATA group ahead, behind the final dot
   * of the message under way (RFC 2920 allows content to be followed by the
   * next transaction's commands). The relay then waits for that message's
   * content, so the caller must make deliver(envelope) the next thing this
   * session does, or drop it. Does nothing where that is not safe: no
   * PIPELINING, a lost session, or a transaction left open by a refusal.
   */
  prime(envelope: Envelope): void {
    if (this.lost !== undefined || this.primed !== undefined || !this.conn.has_extn('pipelining')) return;
    if (this.inEnvelope) {
      this.stashed = envelope;
      return;
    }
    if (this.transaction) return;
    const reader = this.takeReader();
    if (reader === undefined || this.conn.socket() === null) return;
    this.primed = { envelope, replies: this.awaitPrimed(reader, envelope) };
    this.write(envelopeGroup(envelope.from, envelope.to));
  }

  private awaitPrimed(reader: ReplyReader, envelope: Envelope): Promise<string[]> {
    // Its replies come after those to the dot before it, whose deadline is the data timeout.
    const replies = this.awaitReplies('mail', this.options.dataTimeoutMs + this.options.commandTimeoutMs, reader, envelope.to.length + 2);
    replies.catch(() => undefined); // read by deliver(), or dropped with the session
    return replies;
  }

  private takeReader(): ReplyReader | undefined {
    this.reader ??= this.conn.takeReplies();
    return this.reader;
  }

  /** emailjs reads the socket again (its own commands: NOOP, RSET, QUIT, stepwise sends). */
  private releaseReader(): void {
    if (this.reader === undefined) return;
    this.conn.giveBackReplies(this.reader);
    this.reader = undefined;
  }

  /** A primed envelope makes the relay wait for content: an emailjs command now would become part of it. */
  private beforeCommand(stage: Stage): void {
    if (this.primed !== undefined) {
      this.destroy();
      throw new MailroomError('ECONNECTION', `SMTP ${stage} while the next envelope was sent ahead: connection dropped`);
    }
    this.releaseReader();
  }

  private expectReply(raw: string | undefined): SmtpReply {
    const reply = parseSmtpReply(raw);
    if (reply !== undefined) return reply;
    this.destroy();
    throw new MailroomError('ECONNECTION', `unreadable reply from the SMTP relay: ${JSON.stringify(String(raw).slice(0, 80))}`);
  }

  /** Writes `text` and waits for `count` replies, under one deadline; like command() for pipelined groups. */
  private exchange(stage: 'mail' | 'data', timeoutMs: number, reader: ReplyReader, text: string, count: number): Promise<string[]> {
    const replies = this.awaitReplies(stage, timeoutMs, reader, count);
    this.write(text);
    return replies;
  }

  /**
   * Waits for the next `count` replies under a deadline. Several may wait at
   * once (see prime()); losing the session fails them all through the reader.
   */
  private awaitReplies(stage: 'mail' | 'data', timeoutMs: number, reader: ReplyReader, count: number): Promise<string[]> {
    return new Promise<string[]>((resolve, reject) => {
      if (this.lost !== undefined || this.conn.socket() === null) {
        reject(this.lost ?? new MailroomError('ECONNECTION', 'connection closed'));
        return;
      }
      const timer = setTimeout(() => {
        reject(new MailroomError('ETIMEDOUT', `no answer to ${stage} within ${timeoutMs} ms`));
        this.destroy();
      }, timeoutMs);
      reader.expect(count, (err, replies) => {
        clearTimeout(timer);
        if (err === null) {
          resolve(replies);
          return;
        }
        reject(err instanceof MailroomError ? err : new MailroomError('ECONNECTION', `SMTP ${stage}: ${err.message}`, { cause: err }));
        this.destroy();
      });
    });
  }

  /** Writes to the socket; a lost session has failed every waiting reply already. */
  private write(text: string): void {
    const sock = this.conn.socket();
    if (this.lost === undefined && sock !== null) sock.write(text);
  }

  async noop(): Promise<void> {
    this.beforeCommand('noop');
    // emailjs's noop() expects no particular code; command() checks for 250.
    await this.command('noop', this.options.commandTimeoutMs, (cb) => this.conn.command('NOOP', cb));
  }

  async reset(): Promise<void> {
    this.beforeCommand('rset');
    await this.command('rset', this.options.commandTimeoutMs, (cb) => this.conn.rset(cb));
    this.transaction = false;
  }

  /** Polite close: QUIT, then the socket goes whatever the answer. */
  async quit(): Promise<void> {
    try {
      this.beforeCommand('quit');
      if (!this.isLost) await this.command('quit', this.options.commandTimeoutMs, (cb) => this.conn.quit((err, data) => cb(err as Error | null, data)));
    } catch {
      // the relay may drop the socket before answering QUIT; nothing is lost
    } finally {
      this.destroy();
    }
  }

  destroy(): void {
    // Called again and again as a session winds down; an error (and its stack) only the first time.
    if (this.lost === undefined) this.markLost(new MailroomError('ECONNECTION', 'connection closed'));
    this.conn.close(true);
    // emailjs forgets its socket on a graceful close (after a failed AUTH, say)
    // without waiting for it to go: make sure none outlives the session.
    for (const sock of this.sockets) sock.destroy();
  }

  private watch(sock: Socket | TLSSocket | null): void {
    if (sock === null) return;
    this.sockets.push(sock);
    // TRAP: emailjs's close() removes its own 'error' listener; a late reset
    // on that socket would then be an uncaught exception and kill the process.
    sock.on('error', () => undefined);
    // TRAP: emailjs's monitor turns both 'end' and 'close' into an error
    // 'response' for whichever command listens at that moment. Once the relay
    // has ended its side no reply can come, so the session is lost right there
    // and no later command starts (it would catch the stale 'close' error).
    const gone = (): void => {
      if (this.lost === undefined) this.markLost(new MailroomError('ECONNECTION', 'the SMTP relay closed the connection'));
    };
    sock.once('end', gone);
    sock.once('close', gone);
  }

  private markLost(err: MailroomError): void {
    if (this.lost !== undefined) return;
    this.lost = err;
    this.abortPending?.(err);
    this.reader?.abort(err);
    for (const listener of this.lostListeners) listener(err);
    this.lostListeners.clear();
  }

  // TRAP: a command on a socket the server closed can wait forever in emailjs,
  // so every command races its own deadline and the socket's close.
  private command(stage: Stage, timeoutMs: number, start: (cb: Callback) => void): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      if (this.lost !== undefined) {
        reject(this.lost);
        return;
      }
      let settled = false;
      const finish = (err: MailroomError | undefined, value: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.abortPending = undefined;
        this.rearm = undefined;
        if (err !== undefined) reject(err);
        else resolve(value);
      };
      const expire = (ms: number) => (): void => {
        finish(new MailroomError('ETIMEDOUT', `no answer to ${stage} within ${ms} ms`), '');
        this.destroy();
      };
      let timer = setTimeout(expire(timeoutMs), timeoutMs);
      this.abortPending = (err) => finish(err, '');
      this.rearm = (ms) => {
        clearTimeout(timer);
        timer = setTimeout(expire(ms), ms);
      };
      try {
        start((err, data) => finish(err ? classify(err, stage) : undefined, typeof data === 'string' ? data : ''));
      } catch (err) {
        finish(classify(err as Error, stage), '');
      }
    });
  }
}

/**
 * A relay that closes an idle connection (or closes right behind its last 250)
 * races our next MAIL: the socket is gone before any reply. Nothing of this
 * message reached the relay; ESTALE says so, so that it is not counted as a
 * delivery attempt. Any other error passes through.
 */
function staleIfUnanswered(err: unknown): unknown {
  if (err instanceof MailroomError && err.code === 'ECONNECTION' && err.smtp === undefined) {
    return new MailroomError('ESTALE', `${err.message} before it answered MAIL`, { cause: err });
  }
  return err;
}

const DOT_LINE = /(^|\r\n)\./g;

/** RFC 5321 4.5.2: a line that begins with "." gets one more; the final CRLF belongs to data_end(). */
export function dotStuff(raw: string): string {
  const body = raw.endsWith('\r\n') ? raw.slice(0, -2) : raw;
  return body.includes('.') ? body.replace(DOT_LINE, '$1..') : body;
}

function classify(err: Error, stage: Stage): MailroomError {
  if (err instanceof MailroomError) return err;
  const e = err as EmailjsError;
  const reply = parseSmtpReply(e.smtp) ?? parseSmtpReply(e.previous?.smtp);
  if (reply !== undefined) return replyError(reply, stage, err);
  const chain = [e, e.previous].filter((x): x is EmailjsError => x != null);
  const text = chain.map((x) => `${String(x.code ?? '')} ${x.message}`).join(' ');
  if (stage === 'auth') {
    return new MailroomError('EAUTH', `SMTP AUTH failed: ${err.message}`, { cause: err });
  }
  if (TLS_ERROR.test(text) || stage === 'starttls') {
    return new MailroomError('ETLS', `TLS with the SMTP relay failed: ${e.previous?.message ?? err.message}`, { cause: err });
  }
  return new MailroomError('ECONNECTION', `SMTP ${stage}: ${e.previous?.message ?? err.message}`, { cause: err });
}
