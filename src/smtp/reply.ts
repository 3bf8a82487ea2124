// SMTP replies as emailjs hands them over (err.smtp holds the raw reply
// lines) turned into a code, an RFC 3463 enhanced status and one line of text.
import { MailroomError, type ErrorCode, type SmtpReply } from '../errors.js';

// RFC 5321 4.2: the text after the code is optional ("354" alone is a reply),
// and an enhanced code may be all the text there is ("250 2.0.0").
const LINE = /^(\d{3})(?:[ -](?:([245]\.\d{1,3}\.\d{1,3})(?:\s+|$))?(.*))?$/;

export function parseSmtpReply(raw: unknown): SmtpReply | undefined {
  if (typeof raw !== 'string') return undefined;
  let code: number | undefined;
  let enhanced: string | undefined;
  const texts: string[] = [];
  for (const line of raw.split(/\r?\n/)) {
    const m = LINE.exec(line.trim());
    if (m === null) continue;
    code = Number(m[1]);
    enhanced ??= m[2];
    if (m[3]) texts.push(m[3].trim());
  }
  if (code === undefined) return undefined;
  return { code, enhanced, text: texts.join(' ').slice(0, 500) };
}

export function formatReply(reply: SmtpReply): string {
  return [String(reply.code), reply.enhanced, reply.text].filter(Boolean).join(' ');
}

/**
 * RFC 5321 classification of a refusal: 4xx is temporary, 5xx permanent, and a
 * permanent refusal of a recipient is the caller's input, not the relay's fault.
 */
export function replyError(reply: SmtpReply, stage: 'mail' | 'rcpt' | 'data' | 'auth' | 'ehlo', cause?: unknown): MailroomError {
  let code: ErrorCode;
  if (stage === 'auth' && (reply.code === 535 || reply.code === 534 || reply.code === 530)) code = 'EAUTH';
  else if (reply.code >= 400 && reply.code < 500) code = 'ESMTP_TRANSIENT';
  else if (stage === 'rcpt') code = 'ERECIPIENT';
  else code = 'ESMTP_PERMANENT';
  return new MailroomError(code, `SMTP ${stage} refused: ${formatReply(reply)}`, { smtp: reply, cause });
}
