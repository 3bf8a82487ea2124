// Strict address parsing. A transactional mail service refuses what it cannot
// deliver unambiguously: no groups, no comments, no source routes, ASCII local
// parts (internationalised domains are converted to their ASCII form).
import { domainToASCII } from 'node:url';

export interface Address {
  readonly name: string;
  /** local@domain, domain in ASCII (punycode) form */
  readonly address: string;
}

export type ParseResult = { ok: true; value: Address[] } | { ok: false; reason: string };

const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const DOMAIN_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const CONTROL = /[\u0000-\u001f\u007f]/;
/**
 * Already what domainToASCII would return: lowercase ASCII labels, the last
 * one starting with a letter (so it cannot be read as an IPv4 number).
 * Labels with "xn--" still go through it, to have their punycode checked.
 */
const PLAIN_DOMAIN = /^(?:[a-z0-9-]+\.)*[a-z][a-z0-9-]*$/;
/** a list item that is a bare address, or several separated by commas: no quotes, brackets or escapes */
const SIMPLE_LIST = /^[^"<>\\]*$/;

/** Validates one bare address (no display name); returns it normalised or a reason. */
export function parseAddress(input: string): { ok: true; value: string } | { ok: false; reason: string } {
  const at = input.lastIndexOf('@');
  if (at <= 0 || at === input.length - 1) return { ok: false, reason: `"${clip(input)}" is not an address (local@domain)` };
  const local = input.slice(0, at);
  const domainInput = input.slice(at + 1);
  if (local.length > 64 || !LOCAL_PART.test(local)) {
    return { ok: false, reason: `"${clip(input)}" has an invalid local part` };
  }
  const lower = domainInput.toLowerCase();
  // An ASCII domain needs no IDNA conversion, and nearly every domain is one.
  const domain = PLAIN_DOMAIN.test(lower) && !lower.includes('xn--') ? lower : domainToASCII(lower);
  const labels = domain.split('.');
  if (domain === '' || domain.length > 253 || labels.length < 2 || !labels.every((l) => DOMAIN_LABEL.test(l))) {
    return { ok: false, reason: `"${clip(input)}" has an invalid domain` };
  }
  const address = `${local}@${domain}`;
  if (address.length > 254) return { ok: false, reason: `"${clip(input)}" is longer than 254 characters` };
  return { ok: true, value: address };
}

/** Parses "a@x.org", "Name <a@x.org>" or '"Last, First" <a@x.org>', comma separated. */
export function parseAddressList(input: string): ParseResult {
  if (CONTROL.test(input)) return { ok: false, reason: 'contains a control character (CR, LF, ...)' };
  const items = splitList(input);
  if (items === undefined) return { ok: false, reason: `"${clip(input)}" has an unbalanced quote or angle bracket` };
  const out: Address[] = [];
  for (const item of items) {
    if (item === '') continue;
    const parsed = parseMailbox(item);
    if (!parsed.ok) return parsed;
    out.push(parsed.value);
  }
  if (out.length === 0) return { ok: false, reason: 'no address given' };
  return { ok: true, value: out };
}

function parseMailbox(item: string): { ok: true; value: Address } | { ok: false; reason: string } {
  const angle = /^(.*)<([^<>]*)>$/s.exec(item);
  let name = '';
  let bare = item;
  if (angle !== null) {
    name = unquote((angle[1] ?? '').trim());
    bare = (angle[2] ?? '').trim();
  } else if (/[<>"\s]/.test(item)) {
    return { ok: false, reason: `"${clip(item)}" is not an address (local@domain)` };
  }
  const parsed = parseAddress(bare);
  if (!parsed.ok) return parsed;
  return { ok: true, value: { name, address: parsed.value } };
}

function unquote(name: string): string {
  if (name.length >= 2 && name.startsWith('"') && name.endsWith('"')) {
    return name.slice(1, -1).replace(/\\(.)/g, '$1');
  }
  return name;
}

/** Splits on commas outside quotes and angle brackets; undefined if unbalanced. */
function splitList(input: string): string[] | undefined {
  if (SIMPLE_LIST.test(input)) return input.split(',').map((item) => item.trim());
  const items: string[] = [];
  let current = '';
  let quoted = false;
  let angle = false;
  for (let i = 0; i < input.length; i++) {
    const ch = input[i];
    if (quoted && ch === '\\' && i + 1 < input.length) {
      current += ch + input[++i];
      continue;
    }
    if (ch === '"' && !angle) quoted = !quoted;
    else if (ch === '<' && !quoted) {
      if (angle) return undefined;
      angle = true;
    } else if (ch === '>' && !quoted) {
      if (!angle) return undefined;
      angle = false;
    } else if (ch === ',' && !quoted && !angle) {
      items.push(current.trim());
      current = '';
      continue;
    }
    current += ch;
  }
  if (quoted || angle) return undefined;
  items.push(current.trim());
  return items;
}

function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
