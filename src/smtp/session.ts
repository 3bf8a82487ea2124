// A session with the relay: it writes commands and hands each reply, in
// order, to whoever waits for it, under a deadline. The handshake (dial.ts)
// speaks through it from the greeting on, and so does everything after.
// Replies come in the order their commands went out, so only the oldest
// expectation has a clock running; when it is answered the next one's starts.
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { MailroomError, type SmtpReply } from '../errors.js';
import type { Link, LossListener } from './link.js';
import type { SessionOptions } from './options.js';
import { ReplyReader } from './reply-reader.js';
import { formatReply, parseReplyLines, replyError, type SmtpStage } from './reply.js';

interface Expectation {
  readonly stage: SmtpStage;
  readonly timeoutMs: number;
  readonly count: number;
  readonly replies: string[][];
  readonly resolve: (replies: string[][]) => void;
  readonly reject: (err: MailroomError) => void;
}

/** What the relay's EHLO offered. */
export interface Features {
  readonly pipelining: boolean;
  /** RFC 3030: a message's content can go as BDAT <size> LAST, no 354 to wait for */
  readonly chunking: boolean;
  readonly starttls: boolean;
  /** AUTH mechanisms, upper case */
  readonly auth: readonly string[];
}

export const NO_FEATURES: Features = { pipelining: false, chunking: false, starttls: false, auth: [] };

/** text at least this long is written as it is, not joined to the commands around it */
const LARGE_CHUNK = 16_384;

export class SmtpSession {
  /** what the last EHLO offered (dial.ts sets it) */
  features: Features = NO_FEATURES;
  private readonly waiting: Expectation[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** the loss, told with what the relay had begun to answer (failWaiting) */
  private loss: MailroomError | undefined;
  private readonly reader: ReplyReader;
  /** what is to be written at the end of this tick, in order */
  private out: string[] = [];
  private readonly onData = (chunk: Buffer): void => this.reader.push(chunk.toString('latin1'));
  private readonly unsubscribe: () => void;

  constructor(
    private readonly link: Link,
    private readonly sock: Socket | TLSSocket,
    readonly options: SessionOptions,
  ) {
    this.reader = new ReplyReader(
      (lines) => this.onReply(lines),
      (err) => this.destroy(err),
    );
    sock.on('data', this.onData);
    // First among the loss listeners: whatever waits for a reply fails before anyone else hears of the loss.
    this.unsubscribe = link.onLost((err) => this.failWaiting(err));
  }

  get pipelining(): boolean {
    return this.features.pipelining;
  }

  /** Messages can go whole, envelope and BDAT content in one write, several in flight: PIPELINING and CHUNKING both offered. */
  get chunking(): boolean {
    return this.features.pipelining && this.features.chunking;
  }

  /** Whether the TLS handshake resumed an earlier session (see TlsSessionCache). */
  get resumed(): boolean {
    return 'isSessionReused' in this.sock && this.sock.isSessionReused();
  }

  /** Why the session is gone; undefined while it is up. */
  /** why the session was lost, with what the relay had begun to answer (see failWaiting) */
  get lost(): MailroomError | undefined {
    return this.link.lost === undefined ? undefined : (this.loss ?? this.link.lost);
  }

  onLost(listener: LossListener): () => void {
    // The session's own listener runs first (it subscribed first): the loss it tells is the one with the relay's answer.
    return this.link.onLost((err) => listener(this.loss ?? err));
  }

  /**
   * Waits for the next `count` replies, in order after everything already
   * expected. Expect before writing the command, so that no reply finds
   * nobody waiting. A missed deadline drops the session.
   */
  expect(stage: SmtpStage, timeoutMs: number, count: number): Promise<SmtpReply[]> {
    return this.expectLines(stage, timeoutMs, count).then((replies) => replies.map((lines) => parseReplyLines(lines) as SmtpReply));
  }

  /** expect(), with each reply's lines as the relay sent them (EHLO's are the list of what it offers). */
  expectLines(stage: SmtpStage, timeoutMs: number, count: number): Promise<string[][]> {
    return new Promise<string[][]>((resolve, reject) => {
      if (this.link.lost !== undefined) {
        reject(this.link.lost);
        return;
      }
      this.waiting.push({ stage, timeoutMs, count, replies: [], resolve, reject });
      if (this.waiting.length === 1) this.arm();
    });
  }

  /**
   * Writes to the socket at the end of this tick, together with whatever
   * else is written before then: a message's content and the next message's
   * envelope become one write (one TLS record, one syscall) even when the
   * next message is handed over a few microtasks later, as it is when the
   * relay's replies to both came in one read. A lost session has failed
   * everything waiting already.
   */
  write(...texts: readonly string[]): void {
    if (this.link.lost !== undefined) return;
    if (this.out.length === 0) process.nextTick(this.flush);
    this.out.push(...texts);
  }

  /** One command and its reply. */
  async exchange(stage: SmtpStage, timeoutMs: number, ...texts: readonly string[]): Promise<SmtpReply> {
    const replies = this.expect(stage, timeoutMs, 1);
    this.write(...texts);
    return (await replies)[0] as SmtpReply;
  }

  async noop(): Promise<void> {
    const reply = await this.exchange('noop', this.options.commandTimeoutMs, 'NOOP\r\n');
    if (reply.code !== 250) throw replyError(reply, 'noop');
  }

  /** Polite close: QUIT, then the socket goes whatever the answer. */
  async quit(): Promise<void> {
    try {
      if (this.link.lost === undefined) await this.exchange('quit', this.options.commandTimeoutMs, 'QUIT\r\n');
    } catch {
      // the relay may drop the socket before answering QUIT; nothing is lost
    } finally {
      this.destroy();
    }
  }

  destroy(err?: MailroomError): void {
    this.link.destroy(err);
  }

  /**
   * Stops reading the socket, which then belongs to whoever takes it next
   * (the TLS layer, after STARTTLS). Nothing may be waiting for a reply.
   */
  detach(): void {
    this.sock.off('data', this.onData);
    this.reader.stop();
    this.unsubscribe();
  }

  /**
   * Commands join into one string; a message's text, which may be megabytes,
   * goes as its own write rather than being copied into a new string (and
   * copied again to encode it). Corked, the writes still leave as one.
   */
  private readonly flush = (): void => {
    const chunks = this.out;
    this.out = [];
    if (this.link.lost !== undefined) return;
    if (chunks.length === 1) {
      this.sock.write(chunks[0] as string);
      return;
    }
    this.sock.cork();
    let small = '';
    for (const chunk of chunks) {
      if (chunk.length < LARGE_CHUNK) {
        small += chunk;
        continue;
      }
      if (small !== '') this.sock.write(small);
      small = '';
      this.sock.write(chunk);
    }
    if (small !== '') this.sock.write(small);
    this.sock.uncork();
  };

  private onReply(lines: string[]): void {
    const head = this.waiting[0];
    if (head === undefined) {
      // A reply nobody asked for (a 421 before the relay hangs up, most often) puts the dialogue out of step.
      const reply = parseReplyLines(lines) as SmtpReply;
      this.destroy(new MailroomError('ECONNECTION', `the SMTP relay replied unasked: ${formatReply(reply)}`, { smtp: reply }));
      return;
    }
    head.replies.push(lines);
    if (head.replies.length < head.count) return;
    this.waiting.shift();
    clearTimeout(this.timer);
    if (this.waiting.length > 0) this.arm();
    head.resolve(head.replies);
  }

  private arm(): void {
    const head = this.waiting[0] as Expectation;
    this.timer = setTimeout(() => this.destroy(new MailroomError('ETIMEDOUT', `no answer to ${head.stage} within ${head.timeoutMs} ms`)), head.timeoutMs);
  }

  /**
   * The session is lost: whatever waits for a reply fails with why. When
   * the relay had begun to answer the oldest (a 421 to MAIL, then it hung
   * up, as rate-limited relays do), its answer goes with the loss: it is
   * what the relay said about the message (see delivery.ts's failAll).
   */
  private failWaiting(err: MailroomError): void {
    clearTimeout(this.timer);
    this.reader.stop();
    const said = this.waiting[0]?.replies[0];
    const reply = said === undefined || err.smtp !== undefined ? undefined : parseReplyLines(said);
    const why = reply === undefined ? err : new MailroomError(err.code, `${err.message} after it answered ${formatReply(reply)}`, { cause: err, smtp: reply });
    this.loss = why;
    for (const expectation of this.waiting.splice(0)) expectation.reject(why);
  }
}
