// Builds the RFC 5322 / MIME text of a message, every header on purpose.
// The body is a tree: text/plain, or multipart/alternative of it and the
// html; the html inside multipart/related with the inline parts it names by
// cid:; all of that inside multipart/mixed with the attachments. Text that
// is ASCII with short lines goes as 7bit, everything else as base64 in lines
// of 76.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Address } from './address.js';
import type { Attachment, Draft } from './draft.js';
import { encodeWords, formatAddress, formatDate, formatList, MAX_LINE, mimeParameter } from './header-encoding.js';

/** A draft as it is written: no Bcc (the envelope's alone), and what the service adds. */
export interface MimeInput extends Omit<Draft, 'bcc'> {
  readonly from: Address;
  readonly messageId: string;
  readonly date: Date;
}

const CRLF = '\r\n';

// randomUUID draws from a pool of random bytes refilled in bulk, not one
// CSPRNG call a message.
export function newMessageId(domain: string): string {
  return `<${Date.now().toString(36)}.${randomUUID()}@${domain}>`;
}

/** Text, or a file's base64 lines kept as bytes: a megabyte of them is never a string until the message is one. */
type Chunk = string | Buffer;

/** One MIME entity: its content headers (each a full line without CRLF), then its body, which ends with CRLF. */
interface Entity {
  readonly headers: readonly string[];
  readonly body: readonly Chunk[];
}

export function buildMime(m: MimeInput): string {
  const headers: string[] = [`From: ${formatAddress(m.from)}`, `To: ${formatList(m.to)}`];
  if (m.cc.length > 0) headers.push(`Cc: ${formatList(m.cc)}`);
  if (m.replyTo.length > 0) headers.push(`Reply-To: ${formatList(m.replyTo)}`);
  headers.push(`Subject: ${encodeWords(m.subject, 'Subject: '.length)}`, `Date: ${formatDate(m.date)}`, `Message-ID: ${m.messageId}`, 'MIME-Version: 1.0');
  const unsubscribe = m.listUnsubscribe;
  if (unsubscribe.length > 0) {
    headers.push(`List-Unsubscribe: ${unsubscribe.map((u) => `<${u}>`).join(`,${CRLF} `)}`);
    if (unsubscribe.some((u) => u.startsWith('https:'))) headers.push('List-Unsubscribe-Post: List-Unsubscribe=One-Click');
  }
  for (const h of m.headers) headers.push(`${h.name}: ${encodeWords(h.value, h.name.length + 2)}`);
  const top = bodyOf(m);
  const chunks: Chunk[] = [headers.join(CRLF) + CRLF + top.headers.join(CRLF) + CRLF + CRLF, ...top.body];
  if (chunks.every((c): c is string => typeof c === 'string')) return chunks.join('');
  // One flat string made once: a string built by joining a megabyte piece
  // to others is flattened (copied) again by every search and write after.
  return Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c, 'utf8') : c))).toString('utf8');
}

function bodyOf(m: MimeInput): Entity {
  const { attachments } = m;
  const inline = attachments.filter((a) => a.contentId !== '');
  const attached = attachments.filter((a) => a.contentId === '');
  let body = textEntity(normaliseNewlines(m.text), 'plain');
  if (m.html !== '') {
    const html = textEntity(normaliseNewlines(m.html), 'html');
    body = multipart('alternative', [body, inline.length > 0 ? multipart('related', [html, ...inline.map(fileEntity)]) : html]);
  }
  return attached.length > 0 ? multipart('mixed', [body, ...attached.map(fileEntity)]) : body;
}

function multipart(subtype: 'alternative' | 'related' | 'mixed', parts: readonly Entity[]): Entity {
  const boundary = `=_mr_${randomBytes(12).toString('hex')}`;
  const body: Chunk[] = [];
  for (const part of parts) body.push(`--${boundary}${CRLF}${part.headers.join(CRLF)}${CRLF}${CRLF}`, ...part.body);
  body.push(`--${boundary}--${CRLF}`);
  const type = subtype === 'related' ? `multipart/related; type="text/html"; boundary="${boundary}"` : `multipart/${subtype}; boundary="${boundary}"`;
  return { headers: [`Content-Type: ${type}`], body };
}

function textEntity(body: string, subtype: 'plain' | 'html'): Entity {
  const type = `Content-Type: text/${subtype}; charset=utf-8`;
  if (fitsSevenBit(body)) return { headers: [type, 'Content-Transfer-Encoding: 7bit'], body: [body.endsWith(CRLF) ? body : body + CRLF] };
  return { headers: [type, 'Content-Transfer-Encoding: base64'], body: [base64Lines(Buffer.from(body, 'utf8')).toString('latin1')] };
}

function fileEntity(a: Attachment): Entity {
  const named = a.filename !== '';
  const headers = [
    `Content-Type: ${a.contentType}${named ? `;${CRLF} ${mimeParameter('name', a.filename, true)}` : ''}`,
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: ${a.contentId !== '' ? 'inline' : 'attachment'}${named ? `;${CRLF} ${mimeParameter('filename', a.filename)}` : ''}`,
  ];
  if (a.contentId !== '') headers.push(`Content-ID: <${a.contentId}>`);
  return { headers, body: [base64Lines(a.content)] };
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

/**
 * `bytes` in base64, in lines of 76 and their CRLFs: one encoding, then one
 * pass that copies it with the line ends in place (a call a line, or a
 * string a line, costs more than the loop).
 */
function base64Lines(bytes: Buffer): Buffer {
  const b64 = Buffer.from(bytes.toString('base64'), 'latin1');
  const n = b64.length;
  const out = Buffer.allocUnsafe(n + 2 * Math.ceil(n / 76));
  let at = 0;
  for (let i = 0; i < n; i += 76) {
    const end = Math.min(i + 76, n);
    for (let j = i; j < end; j++) out[at++] = b64[j] as number;
    out[at++] = 13;
    out[at++] = 10;
  }
  return out.subarray(0, at);
}

export function normaliseNewlines(s: string): string {
  return /\r(?!\n)|(?<!\r)\n/.test(s) ? s.replace(/\r\n|\r|\n/g, CRLF) : s;
}
