// SMTP replies as emailjs hands them over (err.smtp holds the raw reply
// lines) turned into a code, an RFC 3463 enhanced status and one line of text.
import { MailroomError, type ErrorCode, type SmtpReply } from '../errors.js';

/** Where in the dialogue a reply came: it decides what a refusal means. */
export type SmtpStage = 'connect' | 'greeting' | 'ehlo' | 'starttls' | 'auth' | 'noop' | 'rset' | 'mail' | 'rcpt' | 'data' | 'quit';

// RFC 5321 4.2: the text after the code is optional ("354" alone is a reply),
// and an enhanced code may be all the text there is ("250 2.0.0").
const LINE = /^(\d{3})(?:[ -](?:([245]\.\d{1,3}\.\d{1,3})(?:\s+|$))?(.*))?$/;

export function parseSmtpReply(raw: unknown): SmtpReply | undefined {
  if (typeof raw !== 'string') return undefined;
  let code: number | undefined;
  let enhanced: string | undefined;
  let text = '';
  // Line by line without split(): every message's replies pass through here.
  for (let start = 0; start < raw.length; ) {
    let end = raw.indexOf('\n', start);
    if (end < 0) end = raw.length;
    const m = LINE.exec(raw.slice(start, end).trim());
    start = end + 1;
    if (m === null) continue;
    code = Number(m[1]);
    enhanced ??= m[2];
    const part = m[3]?.trim();
    if (part) text = text === '' ? part : `${text} ${part}`;
  }
  if (code === undefined) return undefined;
  return { code, enhanced, text: text.length > 500 ? text.slice(0, 500) : text };
}

export function formatReply(reply: SmtpReply): string {
  return [String(reply.code), reply.enhanced, reply.text].filter(Boolean).join(' ');
}

/**
 * RFC 5321 classification of a refusal: 4xx is temporary, 5xx permanent, and a
 * permanent refusal of a recipient is the caller's input, not the relay's fault.
 * A reply that is neither (a 2xx or 3xx out of turn) says the dialogue is out
 * of step: the session is not to be trusted, and the message may well go
 * through on a fresh one.
 */
export function replyError(reply: SmtpReply, stage: SmtpStage, cause?: unknown): MailroomError {
  let code: ErrorCode;
  if (reply.code < 400 || reply.code >= 600) {
    return new MailroomError('ECONNECTION', `SMTP ${stage}: unexpected reply ${formatReply(reply)}`, { smtp: reply, cause });
  }
  if (stage === 'auth' && (reply.code === 535 || reply.code === 534 || reply.code === 530)) code = 'EAUTH';
  else if (reply.code >= 400 && reply.code < 500) code = 'ESMTP_TRANSIENT';
  else if (stage === 'rcpt') code = 'ERECIPIENT';
  else code = 'ESMTP_PERMANENT';
  return new MailroomError(code, `SMTP ${stage} refused: ${formatReply(reply)}`, { smtp: reply, cause });
}

/**
 * Whether a refusal also ends the session: 421 is the relay closing the
 * channel (RFC 5321 3.8). Any other 4xx/5xx refusal leaves the session
 * usable after RSET.
 */
export function closesSession(reply: SmtpReply): boolean {
  return reply.code === 421 || reply.code < 400 || reply.code >= 600;
}
