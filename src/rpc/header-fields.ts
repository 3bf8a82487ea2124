// The caller's own header fields and its List-Unsubscribe, checked. A field
// mailroom writes itself (From, Date, Message-ID, the MIME structure, trace
// and signature fields, and those the request has fields for) is refused by
// name, so that no caller can forge one or write it twice; a value is one
// line of text (no CR, LF or other control character: no injection), which
// the builder folds.
import type { HeaderField } from '../mail/draft.js';
import type { Header__Output } from '../generated/mail/Header.js';
import type { Problems } from './problems.js';

export const MAX_HEADERS = 50;
export const MAX_HEADER_VALUE_CHARS = 2000;
const MAX_URI_CHARS = 900;
/** RFC 5322 3.6.8 field-name: printable ASCII but colon; 76 leaves room for ": " and a word on the first line */
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]{1,76}$/;
const VALUE_CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;
/** a URI's text in angle brackets: printable ASCII without spaces or brackets */
const URI_TEXT = /^[\x21-\x3b\x3d\x3f-\x7e]+$/;

/** Written by mailroom; the reason a caller may not. */
const OWN: ReadonlyMap<string, string> = new Map([
  ...['from', 'sender', 'to', 'cc', 'bcc', 'date', 'message-id', 'mime-version', 'return-path', 'received', 'dkim-signature'].map((n) => [n, 'mailroom writes it'] as const),
  ['subject', 'use the subject field'],
  ['reply-to', 'use the reply_to field'],
  ['list-unsubscribe', 'use the list_unsubscribe field'],
  ['list-unsubscribe-post', 'use the list_unsubscribe field with an https URL'],
]);
/** fields a message has at most once (RFC 5322 3.6, RFC 3834) */
const ONCE = new Set(['in-reply-to', 'references', 'auto-submitted']);

export function checkHeaders(list: readonly Header__Output[], problems: Problems): HeaderField[] {
  if (list.length > MAX_HEADERS) {
    problems.add(`headers: at most ${MAX_HEADERS} (got ${list.length})`);
    return [];
  }
  const seen = new Set<string>();
  const out: HeaderField[] = [];
  list.forEach((h, i) => {
    const at = `headers[${i}]`;
    if (!FIELD_NAME.test(h.name)) {
      problems.add(`${at}.name: 1 to 76 printable ASCII characters without a colon or space`);
      return;
    }
    const key = h.name.toLowerCase();
    const own = OWN.get(key) ?? (key.startsWith('content-') ? 'mailroom writes the MIME structure' : undefined);
    if (own !== undefined) problems.add(`${at}.name: ${h.name} is refused (${own})`);
    else if (ONCE.has(key) && seen.has(key)) problems.add(`${at}.name: ${h.name} twice (a message has it once)`);
    else if (h.value.length > MAX_HEADER_VALUE_CHARS) problems.add(`${at}.value: ${h.name}: at most ${MAX_HEADER_VALUE_CHARS} characters`);
    else if (VALUE_CONTROL.test(h.value)) problems.add(`${at}.value: ${h.name}: must not contain CR, LF or other control characters`);
    else out.push({ name: h.name, value: h.value.trim() });
    seen.add(key);
  });
  return out;
}

/** List-Unsubscribe's URIs, https first: `https://…` and/or `mailto:…`, comma-separated, bare. */
export function checkListUnsubscribe(value: string, problems: Problems): string[] {
  if (value.trim() === '') return [];
  const at = 'list_unsubscribe';
  // Refused, not cleaned: what a caller meant by them cannot be known, and mailroom writes the brackets.
  if (/[\r\n<>]/.test(value)) {
    problems.add(`${at}: must not contain CR, LF, < or > (give the URIs bare; mailroom writes the brackets)`);
    return [];
  }
  if (value.length > 2 * MAX_URI_CHARS + 10) {
    problems.add(`${at}: at most two URIs of ${MAX_URI_CHARS} characters`);
    return [];
  }
  const entries = value.split(',').map((e) => e.trim());
  let https: string | undefined;
  let mailto: string | undefined;
  for (const entry of entries) {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(entry)?.[1]?.toLowerCase();
    if (scheme === 'https') {
      let url: URL | undefined;
      try {
        url = new URL(entry);
      } catch {
        url = undefined;
      }
      if (url === undefined || url.hostname === '') problems.add(`${at}: ${JSON.stringify(entry.slice(0, 100))} is not a URL`);
      else if (https !== undefined) problems.add(`${at}: one https URL`);
      else if (url.href.length > MAX_URI_CHARS || !URI_TEXT.test(url.href)) problems.add(`${at}: the https URL must be at most ${MAX_URI_CHARS} characters, without spaces`);
      else https = url.href;
    } else if (scheme === 'mailto') {
      if (mailto !== undefined) problems.add(`${at}: one mailto URI`);
      else if (entry.length > MAX_URI_CHARS || !URI_TEXT.test(entry) || !/^mailto:[^@?]+@[^@?]+/i.test(entry)) problems.add(`${at}: mailto: and an address, at most ${MAX_URI_CHARS} characters, without spaces`);
      else mailto = entry;
    } else if (scheme === 'http') {
      problems.add(`${at}: an http URL is refused; one-click unsubscribe (RFC 8058) needs https`);
    } else {
      problems.add(`${at}: an https: URL and/or a mailto: URI, comma-separated`);
    }
  }
  return [https, mailto].filter((u): u is string => u !== undefined);
}
