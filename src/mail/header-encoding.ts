// How header text is written: addresses, RFC 2047 encoded words, folding
// (RFC 5322 2.2.3), dates, and MIME parameters (RFC 2231, with an RFC 2047
// copy for readers that predate it).
import type { Address } from './address.js';

const CRLF = '\r\n';
/** RFC 5321 4.5.3.1.6 and RFC 5322 2.1.1: octets in a line, CRLF not counted */
export const MAX_LINE = 998;
const ATOM_TEXT = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*$/;
const ASCII_PRINTABLE = /^[\x20-\x7e]*$/;
/** RFC 2231 attribute-char: what a parameter value may hold without percent-encoding */
const ATTR_CHAR = /[A-Za-z0-9!#$&+\-.^_`|~]/;
/** characters of an RFC 2231 section: short enough for `<name>*NN*=` and `;` on a line of 78 */
const SECTION_CHARS = 50;

export function formatAddress(a: Address): string {
  if (a.name === '') return a.address;
  return `${formatName(a.name)} <${a.address}>`;
}

export function formatList(list: readonly Address[]): string {
  return list.map(formatAddress).join(`,${CRLF} `);
}

function formatName(name: string): string {
  if (ATOM_TEXT.test(name)) return name;
  if (ASCII_PRINTABLE.test(name)) return quoted(name);
  return encodeWords(name, 0);
}

function quoted(s: string): string {
  return `"${s.replace(/(["\\])/g, '\\$1')}"`;
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

/**
 * A MIME parameter, e.g. `filename` of Content-Disposition, after its `;`
 * and a fold: quoted when it is short ASCII, else RFC 2231's extended form
 * (UTF-8, percent-encoded) cut into numbered sections on lines of their own.
 * `legacy` adds RFC 2047 words in the plain parameter instead, as mail
 * readers from before RFC 2231 expect of `name` in Content-Type.
 */
export function mimeParameter(name: string, value: string, legacy = false): string {
  const ascii = ASCII_PRINTABLE.test(value);
  if (ascii && (legacy || value.length <= SECTION_CHARS)) return `${name}=${quoted(value)}`;
  // Base64 words hold no quote or backslash; their folds are white space a quoted string may hold.
  if (legacy) return `${name}="${encodeWords(value, name.length + 3)}"`;
  const sections: string[] = [];
  let section = '';
  for (const ch of value) {
    const encoded = ATTR_CHAR.test(ch) ? ch : [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
    if (section.length + encoded.length > SECTION_CHARS) {
      sections.push(section);
      section = '';
    }
    section += encoded;
  }
  sections.push(section);
  return sections.map((s, i) => `${name}*${i}*=${i === 0 ? "utf-8''" : ''}${s}`).join(`;${CRLF} `);
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 date-time in UTC, e.g. "Fri, 27 Nov 2026 22:49:51 +0000". */
export function formatDate(d: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
}
