// An authenticated session with the relay, after the handshake (dial.ts).
// It writes commands and hands each reply, in order, to whoever waits for
// it, under a deadline. Replies come in the order their commands went out,
// so only the oldest expectation has a clock running; when it is answered
// the next one's starts.
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { MailroomError, type SmtpReply } from '../errors.js';
import type { Link, LossListener } from './link.js';
import type { SessionOptions } from './options.js';
import { ReplyReader } from './reply-reader.js';
import { formatReply, replyError, type SmtpStage } from './reply.js';

interface Expectation {
  readonly stage: SmtpStage;
  readonly timeoutMs: number;
  readonly count: number;
  readonly replies: SmtpReply[];
  readonly resolve: (replies: SmtpReply[]) => void;
  readonly reject: (err: MailroomError) => void;
}

/** What the relay's EHLO offered that changes how messages are sent. */
export interface SessionFeatures {
  readonly pipelining: boolean;
}

export class SmtpSession {
  readonly pipelining: boolean;
  /** whether the TLS handshake resumed an earlier session (see TlsSessionCache) */
  readonly resumed: boolean;
  private readonly waiting: Expectation[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly reader: ReplyReader;
  /** what is to be written at the end of this tick */
  private out = '';

  constructor(
    private readonly link: Link,
    private readonly sock: Socket | TLSSocket,
    readonly options: SessionOptions,
    features: SessionFeatures,
  ) {
    this.pipelining = features.pipelining;
    this.resumed = 'isSessionReused' in sock && sock.isSessionReused();
    this.reader = new ReplyReader(
      (reply) => this.onReply(reply),
      (err) => this.destroy(err),
    );
    sock.on('data', (chunk: Buffer) => this.reader.push(chunk.toString('latin1')));
    // First among the loss listeners: whatever waits for a reply fails before anyone else hears of the loss.
    link.onLost((err) => this.failWaiting(err));
  }

  /** Why the session is gone; undefined while it is up. */
  get lost(): MailroomError | undefined {
    return this.link.lost;
  }

  onLost(listener: LossListener): () => void {
    return this.link.onLost(listener);
  }

  /**
   * Waits for the next `count` replies, in order after everything already
   * expected. Expect before writing the command, so that no reply finds
   * nobody waiting. A missed deadline drops the session.
   */
  expect(stage: SmtpStage, timeoutMs: number, count: number): Promise<SmtpReply[]> {
    return new Promise<SmtpReply[]>((resolve, reject) => {
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
  write(text: string): void {
    if (this.link.lost !== undefined) return;
    if (this.out === '') process.nextTick(this.flush);
    this.out += text;
  }

  private readonly flush = (): void => {
    const text = this.out;
    this.out = '';
    if (this.link.lost === undefined) this.sock.write(text);
  };

  /** One command and its reply. */
  async exchange(stage: SmtpStage, timeoutMs: number, text: string): Promise<SmtpReply> {
    const replies = this.expect(stage, timeoutMs, 1);
    this.write(text);
    return ((await replies)[0]) as SmtpReply;
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

  private onReply(reply: SmtpReply): void {
    const head = this.waiting[0];
    if (head === undefined) {
      // A reply nobody asked for (a 421 before the relay hangs up, most often) puts the dialogue out of step.
      this.destroy(new MailroomError('ECONNECTION', `the SMTP relay replied unasked: ${formatReply(reply)}`, { smtp: reply }));
      return;
    }
    head.replies.push(reply);
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

  private failWaiting(err: MailroomError): void {
    clearTimeout(this.timer);
    this.reader.stop();
    for (const expectation of this.waiting.splice(0)) expectation.reject(err);
  }
}
