// Request validation at the gRPC boundary. Every problem of a request is
// reported together (the first MAX_PROBLEMS of them), and nothing that fails
// here reaches the queue. Cheap length checks come before any splitting or
// parsing, so that what a request costs to refuse is in proportion to what
// it is allowed to be, not to what it is.
import { parseAddressList, type Address } from '../mail/address.js';
import { checkAttachments } from './attachments.js';
import { checkHeaders, checkListUnsubscribe } from './header-fields.js';
import { Problems } from './problems.js';
import type { Draft } from '../mail/draft.js';
import type { SendEmailRequest__Output } from '../generated/mail/SendEmailRequest.js';

export interface MailLimits {
  readonly maxSubjectChars: number;
  readonly maxBodyBytes: number;
  readonly maxRecipients: number;
  readonly maxDisplayNameChars: number;
  /** the whole encoded message, attachments included */
  readonly maxMessageBytes: number;
  readonly maxAttachments: number;
  /** messages in one SendMailBatch */
  readonly maxBatch: number;
}

const IDEMPOTENCY_KEY_CHARS = 200;

// NUL is never allowed in SMTP DATA; other controls only as line breaks and tabs.
const BAD_BODY_CHAR = /[\u0000\u000b\u000c\u000e-\u001f\u007f]/;
const HEADER_CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

/** The longest one mailbox can be: a quoted, escaped name, the brackets, a 254-character address, a comma. */
export function maxMailboxChars(limits: MailLimits): number {
  return 2 * limits.maxDisplayNameChars + 2 + 3 + 254 + 2;
}

/** Code points in `s`, without building an array of them. */
function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

export function validateSendEmail(req: SendEmailRequest__Output, limits: MailLimits): Draft & { idempotencyKey: string } {
  const problems = new Problems();
  const mailbox = maxMailboxChars(limits);
  const list = (field: string, values: readonly string[], required: boolean): Address[] => {
    const out: Address[] = [];
    if (values.length > limits.maxRecipients) {
      problems.add(`${field}: at most ${limits.maxRecipients} entries (got ${values.length})`);
      return out;
    }
    for (const value of values) {
      if (value.length > limits.maxRecipients * mailbox) {
        problems.add(`${field}: an entry of ${value.length} characters is longer than ${limits.maxRecipients} addresses can be`);
        continue;
      }
      if (value.trim() === '') continue;
      const parsed = parseAddressList(value);
      if (!parsed.ok) {
        problems.add(`${field}: ${parsed.reason}`);
        continue;
      }
      for (const a of parsed.value) {
        if (a.name.length > limits.maxDisplayNameChars) problems.add(`${field}: a display name of at most ${limits.maxDisplayNameChars} characters (got ${a.name.length})`);
      }
      out.push(...parsed.value);
    }
    if (required && out.length === 0 && !problems.has(field)) problems.add(`${field}: at least one address is required`);
    return out;
  };
  const to = list('to', [req.to], true);
  const cc = list('cc', req.cc, false);
  const bcc = list('bcc', req.bcc, false);
  const replyTo = list('reply_to', [req.reply_to], false);
  if (to.length + cc.length + bcc.length > limits.maxRecipients) {
    problems.add(`recipients: at most ${limits.maxRecipients} across to, cc and bcc`);
  }
  // A subject of more code points than allowed is longer in UTF-16 units too: refuse it before scanning it.
  if (req.subject.length > 2 * limits.maxSubjectChars || codePoints(req.subject) > limits.maxSubjectChars) {
    problems.add(`subject: at most ${limits.maxSubjectChars} characters`);
  } else if (HEADER_CONTROL.test(req.subject)) {
    problems.add('subject: must not contain CR, LF or other control characters');
  }
  // UTF-8 takes at least one byte per UTF-16 unit: a body that is too long in units needs no counting.
  const units = req.body.length + req.html.length;
  if (units > limits.maxBodyBytes) {
    problems.add(`body: body and html together must be at most ${limits.maxBodyBytes} bytes (got at least ${units})`);
  } else {
    const size = Buffer.byteLength(req.body, 'utf8') + Buffer.byteLength(req.html, 'utf8');
    if (size > limits.maxBodyBytes) problems.add(`body: body and html together must be at most ${limits.maxBodyBytes} bytes (got ${size})`);
    if (BAD_BODY_CHAR.test(req.body)) problems.add('body: must not contain NUL or control characters other than tab and line breaks');
    if (BAD_BODY_CHAR.test(req.html)) problems.add('html: must not contain NUL or control characters other than tab and line breaks');
  }
  if (req.idempotency_key !== '' && (req.idempotency_key.length > IDEMPOTENCY_KEY_CHARS || !IDEMPOTENCY_KEY.test(req.idempotency_key))) {
    problems.add(`idempotency_key: 1 to ${IDEMPOTENCY_KEY_CHARS} printable ASCII characters without spaces`);
  }
  const attachments = checkAttachments(req.attachments, req.html, limits, problems);
  const headers = checkHeaders(req.headers, problems);
  const listUnsubscribe = checkListUnsubscribe(req.list_unsubscribe, problems);
  if (!problems.empty) throw problems.error();
  return { to, cc, bcc, replyTo, subject: req.subject, text: req.body, html: req.html, attachments, headers, listUnsubscribe, idempotencyKey: req.idempotency_key };
}
