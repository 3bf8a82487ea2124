// Messages over one session, strictly in the order they were submitted;
// each gets its own outcome: the relay's 250 to its final dot, or why not.
//
// With RFC 2920 PIPELINING a message costs one write and one round trip
// when others queue behind it: [MAIL, RCPT…, DATA] goes out at once, then,
// once the relay said 354, [content, dot, the next message's MAIL, RCPT…,
// DATA] (content may be followed by the next transaction's commands, 3.1).
// Every status of a group is checked, the reply to DATA included; one
// refused recipient fails the message. Without PIPELINING, one command at a
// time.
//
// With CHUNKING too (RFC 3030), a single-recipient message goes whole:
// [MAIL, RCPT, BDAT <size> LAST, content] in one write, no 354 to wait for,
// and the next one right behind it; as many in flight as the connection
// holds (SMTP_PIPELINE_DEPTH). Its three replies are its outcome. A message
// of several recipients still takes the DATA path, so that a refused
// recipient can stop its content before any of it is delivered.
//
// What a lost session means for each message depends on how far it got:
// the oldest one under way fails with the loss (after its dot that is the
// ambiguous case: the relay may have taken it); every message behind it,
// and one whose MAIL was never answered, fails ESTALE: the relay saw none of
// its content, so sending it again cannot duplicate it.
import { MailroomError, type SmtpReply } from '../errors.js';
import type { Envelope } from '../mail/envelope.js';
import { content, envelopeGroup, wholeMessage } from './data.js';
import { replyError, type SmtpStage } from './reply.js';
import { isDeparture } from './link.js';
import type { SmtpSession } from './session.js';

interface Message {
  readonly envelope: Envelope;
  readonly raw: string;
  /** waiting: nothing written yet; envelope: its MAIL is out; content: its final dot (or BDAT LAST) is out */
  phase: 'waiting' | 'envelope' | 'content';
  /** the relay has answered its MAIL */
  answered: boolean;
  readonly resolve: (reply: SmtpReply) => void;
  readonly reject: (err: MailroomError) => void;
}

const ignore = (): void => undefined;

export class Deliveries {
  /** every message without an outcome, oldest first; outcomes come in this order */
  private readonly queue: Message[] = [];
  /** PIPELINING: what has been written ends where a new transaction may begin */
  private boundary = true;
  /** stepwise: the message before the next one has its outcome */
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly session: SmtpSession,
    /** hears how long each whole message waited for its reply (see Pace) */
    private readonly waited: (ms: number, now: number) => void = () => undefined,
  ) {
    session.onLost((err) => this.failAll(err));
  }

  submit(envelope: Envelope, raw: string): Promise<SmtpReply> {
    return new Promise<SmtpReply>((resolve, reject) => {
      const lost = this.session.lost;
      if (lost !== undefined) {
        reject(stale(lost));
        return;
      }
      const message: Message = { envelope, raw, phase: 'waiting', answered: false, resolve, reject };
      this.queue.push(message);
      if (this.session.pipelining) this.advance();
      else this.tail = this.tail.then(() => this.stepwise(message)).catch(ignore);
    });
  }

  /**
   * Writes `before`, followed by what may begin now: every waiting message
   * that can go whole (CHUNKING), then the next one's envelope if a
   * transaction may begin. One write: the relay reads them as one group.
   */
  private advance(...before: readonly string[]): void {
    const out = [...before];
    for (let next = this.nextWaiting(); next !== undefined; next = this.nextWaiting()) {
      if (this.session.chunking && next.envelope.to.length === 1) {
        out.push(...this.whole(next));
        continue;
      }
      this.boundary = false;
      next.phase = 'envelope';
      const { from, to } = next.envelope;
      const message = next;
      const replies = this.session.expect('mail', this.session.options.commandTimeoutMs, to.length + 2);
      out.push(envelopeGroup(from, to));
      // A rejection here is the session's loss, which failAll answers.
      replies.then((r) => this.onEnvelope(message, r), ignore);
      break;
    }
    if (out.length > 0) this.session.write(...out);
  }

  private nextWaiting(): Message | undefined {
    return this.boundary ? this.queue.find((m) => m.phase === 'waiting') : undefined;
  }

  /**
   * A whole message (CHUNKING): its text, with the expectations of its three
   * replies registered, each on its own, so that a loss knows whether the
   * relay had begun to answer it.
   */
  private whole(message: Message): string[] {
    message.phase = 'content';
    const { from, to } = message.envelope;
    const { commandTimeoutMs, dataTimeoutMs } = this.session.options;
    const mail = this.session.expect('mail', commandTimeoutMs, 1);
    const rcpt = this.session.expect('rcpt', commandTimeoutMs, 1);
    const bdat = this.session.expect('data', dataTimeoutMs, 1);
    mail.then(() => {
      message.answered = true;
    }, ignore);
    const written = performance.now();
    Promise.all([mail, rcpt, bdat]).then(([[m], [r], [b]]) => {
      const now = performance.now();
      this.waited(now - written, now);
      this.conclude(message, wholeOutcome(m as SmtpReply, r as SmtpReply, b as SmtpReply));
    }, ignore);
    return wholeMessage(from, to[0] as string, message.raw);
  }

  private onEnvelope(message: Message, replies: SmtpReply[]): void {
    message.answered = true;
    const n = message.envelope.to.length;
    const mail = replies[0] as SmtpReply;
    let refused = mail.code === 250 ? undefined : replyError(mail, 'mail');
    let accepted = 0;
    for (let i = 1; i <= n; i++) {
      const rcpt = replies[i] as SmtpReply;
      if (rcpt.code === 250 || rcpt.code === 251) accepted++;
      else refused ??= replyError(rcpt, 'rcpt');
    }
    const data = replies[n + 1] as SmtpReply;
    if (data.code !== 354) {
      this.conclude(message, refused ?? replyError(data, 'data'));
      // No content follows; RSET closes whatever MAIL may have opened.
      this.closeTransaction('RSET\r\n', 'rset', true);
      return;
    }
    if (refused !== undefined) {
      this.conclude(message, refused);
      // The relay took DATA although the envelope failed. With no recipient
      // a lone dot ends an empty transaction that goes nowhere; otherwise
      // only dropping the connection keeps a partial delivery from happening.
      if (accepted === 0 && mail.code === 250) this.closeTransaction('.\r\n', 'data', false);
      else this.session.destroy(new MailroomError('ECONNECTION', 'connection dropped: the relay took DATA for a message with a refused recipient'));
      return;
    }
    message.phase = 'content';
    const dot = this.session.expect('data', this.session.options.dataTimeoutMs, 1);
    // The final dot ends this transaction whatever the relay answers to it.
    this.boundary = true;
    this.advance(...content(message.raw));
    dot.then(([reply]) => this.conclude(message, (reply as SmtpReply).code === 250 ? (reply as SmtpReply) : replyError(reply as SmtpReply, 'data')), ignore);
  }

  /** Ends an open transaction with `text`; `strict`: anything but 250 means the session is out of step. */
  private closeTransaction(text: string, stage: SmtpStage, strict: boolean): void {
    const reply = this.session.expect(stage, this.session.options.commandTimeoutMs, 1);
    this.boundary = true;
    this.advance(text);
    reply.then(([r]) => {
      if (strict && (r as SmtpReply).code !== 250) this.session.destroy(replyError(r as SmtpReply, stage));
    }, ignore);
  }

  /** Without PIPELINING: each command waits for its reply. */
  private async stepwise(message: Message): Promise<void> {
    const { session } = this;
    const { commandTimeoutMs, dataTimeoutMs } = session.options;
    message.phase = 'envelope';
    const refused = async (reply: SmtpReply, stage: SmtpStage): Promise<void> => {
      this.conclude(message, replyError(reply, stage));
      const reset = await session.exchange('rset', commandTimeoutMs, 'RSET\r\n');
      if (reset.code !== 250) session.destroy(replyError(reset, 'rset'));
    };
    const mail = await session.exchange('mail', commandTimeoutMs, `MAIL FROM:<${message.envelope.from}>\r\n`);
    // From here the relay has seen the message: a loss counts an attempt, as on the pipelined path.
    message.answered = true;
    if (mail.code !== 250) return refused(mail, 'mail');
    for (const rcpt of message.envelope.to) {
      const reply = await session.exchange('rcpt', commandTimeoutMs, `RCPT TO:<${rcpt}>\r\n`);
      if (reply.code !== 250 && reply.code !== 251) return refused(reply, 'rcpt');
    }
    const data = await session.exchange('data', commandTimeoutMs, 'DATA\r\n');
    if (data.code !== 354) return refused(data, 'data');
    message.phase = 'content';
    const dot = await session.exchange('data', dataTimeoutMs, ...content(message.raw));
    this.conclude(message, dot.code === 250 ? dot : replyError(dot, 'data'));
  }

  /** The outcome of the oldest message: outcomes come in submission order, as the relay's replies do. */
  private conclude(message: Message, outcome: SmtpReply | MailroomError): void {
    if (this.queue[0] !== message) throw new MailroomError('EINTERNAL', 'delivery outcome out of order');
    this.queue.shift();
    if (outcome instanceof MailroomError) message.reject(outcome);
    else message.resolve(outcome);
  }

  /**
   * The session is lost. A message whose content went out may have been
   * taken: it fails with the loss (retried: at least once), unless the relay
   * went away (closed, reset) before it answered even its MAIL: a relay that
   * closes after N messages closes right behind its Nth reply, and what we
   * pipelined behind that was never looked at (ESTALE, requeued free). The
   * oldest message whose envelope went out may have been seen; every other
   * one, nothing of it reached the relay (ESTALE).
   */
  private failAll(err: MailroomError): void {
    let first = true;
    for (const message of this.queue.splice(0)) {
      // The relay refused its MAIL and hung up (a 421 "too many messages"): that refusal is its outcome.
      if (first && message.phase === 'envelope' && !message.answered && err.smtp !== undefined && err.smtp.code >= 400) message.reject(replyError(err.smtp, 'mail', err));
      else if (message.answered) message.reject(message.phase === 'content' ? unconfirmed(err) : err);
      else if (message.phase === 'content' || (first && message.phase === 'envelope')) message.reject(staleIfUnanswered(err));
      else message.reject(stale(err));
      first = false;
    }
  }
}

/** A whole message's outcome from its MAIL, RCPT and BDAT replies: the first refusal, else the relay's 250. */
function wholeOutcome(mail: SmtpReply, rcpt: SmtpReply, bdat: SmtpReply): SmtpReply | MailroomError {
  if (mail.code !== 250) return replyError(mail, 'mail');
  if (rcpt.code !== 250 && rcpt.code !== 251) return replyError(rcpt, 'rcpt');
  return bdat.code === 250 ? bdat : replyError(bdat, 'data');
}

/**
 * A relay that closes an idle connection (or closes right behind its last 250)
 * races our next MAIL: the socket is gone before any reply. Nothing of this
 * message reached the relay; ESTALE says so, so that it is not counted as a
 * delivery attempt. Any other loss (a timeout, a reply out of bounds or out of
 * step) passes through: the relay did answer, or may have.
 */
function staleIfUnanswered(err: MailroomError): MailroomError {
  return isDeparture(err) ? stale(err) : err;
}

/** The message went out whole and the session was lost before the relay's reply: SMTP's one ambiguous case, said as such. */
function unconfirmed(err: MailroomError): MailroomError {
  return new MailroomError(err.code, `${err.message} after the message was sent, before the relay confirmed it (it may have been delivered)`, { cause: err, smtp: err.smtp });
}

function stale(err: MailroomError): MailroomError {
  return new MailroomError('ESTALE', `${err.message} before the relay answered MAIL`, { cause: err });
}
