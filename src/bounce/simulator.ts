// The mailbox simulator: messages whose every recipient is at
// simulator.mailroom.invalid (a reserved TLD: never real mail) never reach
// the relay, in any mode. Each local part is an outcome, as a relay and a
// recipient's server would give it:
//
//   success@    250: SENT
//   bounce@     250, then a delivery status notification (5.1.1): BOUNCED
//   complaint@  250, then an ARF feedback report: COMPLAINED
//   defer@      451 once (DEFERRED), then 250 (a SYNC send retries at once)
//   reject@     550 5.1.1 to RCPT: FAILED, ERECIPIENT
//   (anything else: success)
//
// Its reports are real MIME, read by the same parser and applied through
// the same desk and store as a relay's; they never add to the suppression
// list.
import type { Logger } from 'winston';
import { MailroomError, type SmtpReply } from '../errors.js';
import type { OutgoingMessage } from '../mail/compose.js';
import type { Delivered } from '../mail/job.js';
import type { Change, Claimed } from '../outbox/store.js';
import { formatReply } from '../smtp/reply.js';
import type { BounceDesk } from './desk.js';
import { isSimulated, SIMULATOR_DOMAIN, type ReturnPaths } from './return-path.js';

type Outcome = 'success' | 'bounce' | 'complaint' | 'defer' | 'reject';

const DELIVERED: SmtpReply = { code: 250, enhanced: '2.0.0', text: 'simulated: delivered' };
const DEFERRED: SmtpReply = { code: 451, enhanced: '4.3.0', text: 'simulated: try again later' };
const REJECTED: SmtpReply = { code: 550, enhanced: '5.1.1', text: 'simulated: no such mailbox' };
/** how soon a simulated report comes back after the 250, and how often it is tried again while the status record is not written yet */
const REPORT_AFTER_MS = 200;
const REPORT_TRIES = 6;
/** a deferred simulated message is due again this soon */
const DEFER_MS = 1000;

function outcomeOf(address: string): Outcome {
  const local = address.slice(0, address.lastIndexOf('@')).toLowerCase();
  return local === 'bounce' || local === 'complaint' || local === 'defer' || local === 'reject' ? local : 'success';
}

/** Whether the simulator takes a message: every recipient is a simulator address. */
export function simulated(recipients: readonly string[]): boolean {
  return recipients.length > 0 && recipients.every(isSimulated);
}

export class Simulator {
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly desk: BounceDesk,
    private readonly paths: ReturnPaths,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** A SYNC send: what the relay would have answered (a deferral is retried at once: two attempts). */
  deliver(message: OutgoingMessage): Promise<Delivered> {
    const outcomes = message.envelope.to.map(outcomeOf);
    if (outcomes.includes('reject')) return Promise.reject(new MailroomError('ERECIPIENT', `SMTP rcpt refused: ${formatReply(REJECTED)}`, { smtp: REJECTED }));
    this.reportLater(message);
    return Promise.resolve({ messageId: message.messageId, reply: DELIVERED, attempts: outcomes.includes('defer') ? 2 : 1 });
  }

  /** A queued message's attempt: the change it ends in (its reports follow once it is recorded SENT: see delivered). */
  attempt(c: Claimed): Change {
    const outcomes = c.envelope.to.map(outcomeOf);
    const at = this.now();
    const base = { id: c.id, at, attempted: true, connection: 'simulator' } as const;
    if (outcomes.includes('reject')) return { ...base, event: 'FAIL', response: formatReply(REJECTED), errorCode: 'ERECIPIENT' };
    if (outcomes.includes('defer') && c.attempts === 0) return { ...base, event: 'DEFER', response: formatReply(DEFERRED), errorCode: 'ESMTP_TRANSIENT', retryAt: at + DEFER_MS };
    return { ...base, event: 'DELIVERED', response: formatReply(DELIVERED) };
  }

  /** A queued message recorded SENT: its reports come back as a real one's would. */
  delivered(c: Claimed): void {
    this.reportLater({ messageId: c.id, envelope: c.envelope, raw: '' });
  }

  private reportLater(message: OutgoingMessage): void {
    const keys = this.paths.ready;
    if (keys === undefined) return;
    const returnPath = `b+${keys.token(keys.keyOf(message.messageId))}@${SIMULATOR_DOMAIN}`;
    const bounced = message.envelope.to.filter((a) => outcomeOf(a) === 'bounce');
    const complained = message.envelope.to.filter((a) => outcomeOf(a) === 'complaint');
    const reports = [...(bounced.length > 0 ? [dsn(returnPath, message.messageId, bounced)] : []), ...complained.map((a) => arf(returnPath, message.messageId, a))];
    for (const report of reports) this.send(returnPath, report, 1);
  }

  /** Hands a report to the desk; while the message's record is not written yet (a SYNC send's), it tries again. */
  private send(returnPath: string, report: string, attempt: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.desk.receive([returnPath], report, true).then(
        (taken) => {
          if (taken === 'unknown' && attempt < REPORT_TRIES) this.send(returnPath, report, attempt + 1);
        },
        (err: unknown) => this.log.warn('simulator: a report could not be applied', { reason: (err as Error).message }),
      );
    }, REPORT_AFTER_MS * attempt);
    timer.unref();
    this.timers.add(timer);
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

/** A multipart/report as a reporting MTA sends one: a line for people, the report's fields, the original's headers. */
function multipartReport(o: { from: string; returnPath: string; subject: string; type: string; human: string; fields: readonly string[]; messageId: string }): string {
  return [
    `From: ${o.from}`,
    `To: <${o.returnPath}>`,
    `Subject: ${o.subject}`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=${o.type}; boundary="simulated"`,
    '',
    '--simulated',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    o.human,
    '',
    '--simulated',
    `Content-Type: message/${o.type}`,
    '',
    ...o.fields,
    '--simulated',
    'Content-Type: text/rfc822-headers',
    '',
    `Return-Path: <${o.returnPath}>`,
    `Message-ID: ${o.messageId}`,
    '',
    '--simulated--',
    '',
  ].join('\r\n');
}

function dsn(returnPath: string, messageId: string, recipients: readonly string[]): string {
  const blocks = recipients.map((r) => `Final-Recipient: rfc822; ${r}\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; ${formatReply(REJECTED)}\r\n`);
  return multipartReport({
    from: `MAILER-DAEMON@${SIMULATOR_DOMAIN}`,
    returnPath,
    subject: 'Undelivered Mail Returned to Sender (simulated)',
    type: 'delivery-status',
    human: "mailroom's mailbox simulator: this message could not be delivered.",
    fields: [`Reporting-MTA: dns; ${SIMULATOR_DOMAIN}`, '', blocks.join('\r\n')],
    messageId,
  });
}

function arf(returnPath: string, messageId: string, recipient: string): string {
  return multipartReport({
    from: `feedback@${SIMULATOR_DOMAIN}`,
    returnPath,
    subject: 'Feedback report (simulated)',
    type: 'feedback-report',
    human: "mailroom's mailbox simulator: a recipient reported this message as spam.",
    fields: ['Feedback-Type: abuse', 'User-Agent: mailroom-simulator/1', 'Version: 1', `Original-Mail-From: <${returnPath}>`, `Original-Rcpt-To: <${recipient}>`, ''],
    messageId,
  });
}
