// SMTP replies turned into a code, an RFC 3463 enhanced status and one line
// of text, and what a refusal means.
import { MailroomError, type ErrorCode, type SmtpReply } from '../errors.js';

/** Where in the dialogue a reply came: it decides what a refusal means. */
export type SmtpStage = 'connect' | 'tls' | 'greeting' | 'ehlo' | 'starttls' | 'auth' | 'noop' | 'rset' | 'mail' | 'rcpt' | 'data' | 'quit';

// RFC 5321 4.2: the text after the code is optional ("354" alone is a reply),
// and an enhanced code may be all the text there is ("250 2.0.0").
const LINE = /^(\d{3})(?:[ -](?:([245]\.\d{1,3}\.\d{1,3})(?:\s+|$))?(.*))?$/;

/** The text kept of a reply: enough for a person to read, never a relay's whole banner. */
const MAX_TEXT = 500;

/** A reply from its lines (the reader's output): the last line's code, the first enhanced code, the texts joined. */
export function parseReplyLines(lines: readonly string[]): SmtpReply | undefined {
  let code: number | undefined;
  let enhanced: string | undefined;
  let text = '';
  for (const line of lines) {
    const m = LINE.exec(line.trim());
    if (m === null) continue;
    code = Number(m[1]);
    enhanced ??= m[2];
    const part = m[3]?.trim();
    if (part && text.length < MAX_TEXT) text = text === '' ? part : `${text} ${part}`;
  }
  if (code === undefined) return undefined;
  return { code, enhanced, text: text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) : text };
}

/** A reply from its raw text, lines separated by LF or CRLF. */
export function parseSmtpReply(raw: unknown): SmtpReply | undefined {
  return typeof raw === 'string' ? parseReplyLines(raw.split('\n')) : undefined;
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
