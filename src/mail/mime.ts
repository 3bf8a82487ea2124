// Builds the RFC 5322 / MIME text of a message. emailjs's Message is not used
// for this: it labels every text part 7bit even when it holds UTF-8 or lines
// over 998 octets, adds MIME-Version only to multipart mail and derives
// Message-IDs from the host name. Here every header is set on purpose.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Address } from './address.js';

export interface MimeInput {
  readonly from: Address;
  readonly to: readonly Address[];
  readonly cc: readonly Address[];
  readonly replyTo: readonly Address[];
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  readonly messageId: string;
  readonly date: Date;
}

const CRLF = '\r\n';
/** RFC 5321 4.5.3.1.6 and RFC 5322 2.1.1: octets in a line, CRLF not counted */
const MAX_LINE = 998;
const ATOM_TEXT = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*$/;
const ASCII_PRINTABLE = /^[\x20-\x7e]*$/;

// randomUUID draws from a pool of random bytes refilled in bulk, not one
// CSPRNG call a message.
export function newMessageId(domain: string): string {
  return `<${Date.now().toString(36)}.${randomUUID()}@${domain}>`;
}

export function buildMime(m: MimeInput): string {
  const headers: string[] = [
    `From: ${formatAddress(m.from)}`,
    `To: ${formatList(m.to)}`,
  ];
  if (m.cc.length > 0) headers.push(`Cc: ${formatList(m.cc)}`);
  if (m.replyTo.length > 0) headers.push(`Reply-To: ${formatList(m.replyTo)}`);
  headers.push(
    `Subject: ${encodeWords(m.subject, 'Subject: '.length)}`,
    `Date: ${formatDate(m.date)}`,
    `Message-ID: ${m.messageId}`,
    'MIME-Version: 1.0',
  );
  const text = normaliseNewlines(m.text);
  if (m.html === '') {
    return headers.join(CRLF) + CRLF + textPart(text, 'plain');
  }
  const boundary = `=_mr_${randomBytes(12).toString('hex')}`;
  return (
    headers.join(CRLF) +
    CRLF +
    `Content-Type: multipart/alternative; boundary="${boundary}"${CRLF}${CRLF}` +
    `--${boundary}${CRLF}` +
    textPart(text, 'plain') +
    `--${boundary}${CRLF}` +
    textPart(normaliseNewlines(m.html), 'html') +
    `--${boundary}--${CRLF}`
  );
}

/** Content headers, blank line and body of one text part; ends with CRLF. */
function textPart(body: string, subtype: 'plain' | 'html'): string {
  const type = `Content-Type: text/${subtype}; charset=utf-8${CRLF}`;
  if (fitsSevenBit(body)) {
    return `${type}Content-Transfer-Encoding: 7bit${CRLF}${CRLF}${body}${body.endsWith(CRLF) ? '' : CRLF}`;
  }
  return `${type}Content-Transfer-Encoding: base64${CRLF}${CRLF}${wrapBase64(Buffer.from(body, 'utf8').toString('base64'))}`;
}

/** ASCII only, and no line over MAX_LINE octets; one pass, no copies (it runs on every message). */
function fitsSevenBit(body: string): boolean {
  let lineStart = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i);
    if (c > 0x7f) return false;
    if (c === 10 /* LF */) {
      // the line's CR does not count toward its length
      if (i - lineStart - (i > 0 && body.charCodeAt(i - 1) === 13 ? 1 : 0) > MAX_LINE) return false;
      lineStart = i + 1;
    }
  }
  return body.length - lineStart <= MAX_LINE;
}

/** Lines of 76 characters, built as one flat string: a rope of slices would keep thousands of objects and the whole base64 text alive until it is flattened on the wire. */
function wrapBase64(b64: string): string {
  const lines = Math.ceil(b64.length / 76);
  const out = Buffer.allocUnsafe(b64.length + 2 * lines);
  let at = 0;
  for (let i = 0; i < b64.length; i += 76) {
    at += out.write(b64.slice(i, i + 76), at, 'latin1');
    out[at++] = 13;
    out[at++] = 10;
  }
  return out.toString('latin1', 0, at);
}

export function normaliseNewlines(s: string): string {
  return /\r(?!\n)|(?<!\r)\n/.test(s) ? s.replace(/\r\n|\r|\n/g, CRLF) : s;
}

export function formatAddress(a: Address): string {
  if (a.name === '') return a.address;
  return `${formatName(a.name)} <${a.address}>`;
}

function formatList(list: readonly Address[]): string {
  return list.map(formatAddress).join(`,${CRLF} `);
}

function formatName(name: string): string {
  if (ATOM_TEXT.test(name)) return name;
  if (ASCII_PRINTABLE.test(name)) return `"${name.replace(/(["\\])/g, '\\$1')}"`;
  return encodeWords(name, 0);
}

/**
 * RFC 2047 B-encoding for non-ASCII header text, split into encoded words of at
 * most 75 characters (never inside a UTF-8 sequence) on folded lines of at
 * most 76 characters, counting the `firstLineUsed` already on the first line.
 */
export function encodeWords(value: string, firstLineUsed: number): string {
  if (ASCII_PRINTABLE.test(value) && value.length + firstLineUsed <= 78) return value;
  if (ASCII_PRINTABLE.test(value)) {
    // Folding happens only at spaces: a long run without one would break the
    // 998-octet line limit (RFC 5322 2.1.1), and encoded words may split anywhere.
    const folded = foldAscii(value, firstLineUsed);
    if (folded.split(CRLF).every((line, i) => line.length + (i === 0 ? firstLineUsed : 0) <= MAX_LINE)) return folded;
  }
  // "=?UTF-8?B?" + "?=" is 12 characters; base64 turns 3 bytes into 4.
  const bytesFor = (room: number): number => Math.max(4, Math.floor((Math.min(room, 75) - 12) / 4) * 3);
  const words: string[] = [];
  let budget = bytesFor(76 - firstLineUsed);
  let chunk = '';
  for (const ch of value) {
    if (chunk !== '' && Buffer.byteLength(chunk + ch, 'utf8') > budget) {
      words.push(chunk);
      chunk = '';
      budget = bytesFor(75); // a folded line starts with one space
    }
    chunk += ch;
  }
  if (chunk !== '') words.push(chunk);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w, 'utf8').toString('base64')}?=`).join(`${CRLF} `);
}

/** Folds long ASCII header text at spaces (RFC 5322 2.2.3). */
function foldAscii(value: string, used: number): string {
  const parts = value.split(' ');
  let line = used;
  let out = '';
  for (const [i, part] of parts.entries()) {
    // Never before an empty part (a run of spaces): a folded line of only
    // white space is obsolete syntax (RFC 5322 4.2).
    if (i > 0 && part !== '' && line + 1 + part.length > 78) {
      out += `${CRLF} ${part}`;
      line = 1 + part.length;
    } else {
      out += i > 0 ? ` ${part}` : part;
      line += (i > 0 ? 1 : 0) + part.length;
    }
  }
  return out;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 date-time in UTC, e.g. "Fri, 27 Nov 2026 22:49:51 +0000". */
export function formatDate(d: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
}
