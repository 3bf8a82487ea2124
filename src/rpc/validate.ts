// Request validation at the gRPC boundary. Every problem of a request is
// reported together, and nothing that fails here reaches the queue.
import { MailroomError } from '../errors.js';
import { parseAddressList, type Address } from '../mail/address.js';
import type { Draft } from '../mail/compose.js';
import type { SendEmailRequest__Output } from '../generated/mail/SendEmailRequest.js';

export interface MailLimits {
  readonly maxSubjectChars: number;
  readonly maxBodyBytes: number;
  readonly maxRecipients: number;
}

// NUL is never allowed in SMTP DATA; other controls only as line breaks and tabs.
const BAD_BODY_CHAR = /[\u0000\u000b\u000c\u000e-\u001f\u007f]/;
const HEADER_CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

export function validateSendEmail(req: SendEmailRequest__Output, limits: MailLimits): Draft & { idempotencyKey: string } {
  const problems: string[] = [];
  const list = (field: string, values: readonly string[], required: boolean): Address[] => {
    const out: Address[] = [];
    for (const value of values) {
      if (value.trim() === '') continue;
      const parsed = parseAddressList(value);
      if (parsed.ok) out.push(...parsed.value);
      else problems.push(`${field}: ${parsed.reason}`);
    }
    if (required && out.length === 0 && !problems.some((p) => p.startsWith(field))) problems.push(`${field}: at least one address is required`);
    return out;
  };
  const to = list('to', [req.to], true);
  const cc = list('cc', req.cc, false);
  const bcc = list('bcc', req.bcc, false);
  const replyTo = list('reply_to', [req.reply_to], false);
  if (to.length + cc.length + bcc.length > limits.maxRecipients) {
    problems.push(`recipients: at most ${limits.maxRecipients} across to, cc and bcc`);
  }
  if (HEADER_CONTROL.test(req.subject)) problems.push('subject: must not contain CR, LF or other control characters');
  if ([...req.subject].length > limits.maxSubjectChars) problems.push(`subject: at most ${limits.maxSubjectChars} characters`);
  const size = Buffer.byteLength(req.body, 'utf8') + Buffer.byteLength(req.html, 'utf8');
  if (size > limits.maxBodyBytes) problems.push(`body: body and html together must be at most ${limits.maxBodyBytes} bytes (got ${size})`);
  if (BAD_BODY_CHAR.test(req.body)) problems.push('body: must not contain NUL or control characters other than tab and line breaks');
  if (BAD_BODY_CHAR.test(req.html)) problems.push('html: must not contain NUL or control characters other than tab and line breaks');
  if (req.idempotency_key !== '' && !IDEMPOTENCY_KEY.test(req.idempotency_key)) {
    problems.push('idempotency_key: 1 to 200 printable ASCII characters without spaces');
  }
  if (problems.length > 0) throw new MailroomError('EINVALID', problems.join('; '));
  return { to, cc, bcc, replyTo, subject: req.subject, text: req.body, html: req.html, idempotencyKey: req.idempotency_key };
}
