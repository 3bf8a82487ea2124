// Delivery reports as mailroom reads them: RFC 3464 delivery status
// notifications (multipart/report; report-type=delivery-status) and RFC
// 5965 feedback reports (report-type=feedback-report), parsed with a real
// MIME parser (postal-mime) and the RFC 3464 field grammar: blocks of
// header-style fields separated by blank lines, folded lines unfolded, the
// first block about the message, one block per recipient after it.
import PostalMime from 'postal-mime';
import type { BounceKind } from '../outbox/store.js';

export interface ReportedRecipient {
  /** the address it names (Original-Recipient, else Final-Recipient; ARF: Original-Rcpt-To), if any */
  readonly address: string | undefined;
  readonly kind: BounceKind;
  /** the enhanced status code ('' for a complaint) */
  readonly status: string;
  /** the remote server's text (Diagnostic-Code), or the feedback type */
  readonly diagnostic: string;
}

export interface ParsedReport {
  readonly type: 'delivery-status' | 'feedback-report';
  readonly recipients: readonly ReportedRecipient[];
  /** envelope senders the report names for the original (ARF Original-Mail-From, the enclosed Return-Path) */
  readonly returnPaths: readonly string[];
}

/** Feedback types that are a recipient's complaint (RFC 5965 §7.3; not-spam and auth-failure are not). */
const COMPLAINTS = new Set(['abuse', 'fraud', 'virus', 'other']);

type Fields = Map<string, string>;

/** RFC 3464 §2.1: blocks of fields; a line that starts with white space continues the one before. */
export function fieldBlocks(text: string): Fields[] {
  const blocks: Fields[] = [];
  let current: Fields | undefined;
  let last: string | undefined;
  for (const line of text.replace(/\r\n/g, '\n').split('\n')) {
    if (line.trim() === '') {
      current = undefined;
      last = undefined;
      continue;
    }
    if (/^[ \t]/.test(line) && current !== undefined && last !== undefined) {
      current.set(last, `${current.get(last) ?? ''} ${line.trim()}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (current === undefined) {
      current = new Map();
      blocks.push(current);
    }
    last = line.slice(0, colon).trim().toLowerCase();
    // A field named twice keeps its first value (Final-Recipient is once per block).
    if (!current.has(last)) current.set(last, line.slice(colon + 1).trim());
  }
  return blocks;
}

/** "rfc822; <user@example.com>" → "user@example.com" */
function addressOf(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const semi = value.indexOf(';');
  const bare = (semi >= 0 ? value.slice(semi + 1) : value).trim().replace(/^<|>$/g, '');
  return bare.includes('@') ? bare : undefined;
}

/** A per-recipient block as a bounce; undefined for one that is not a failure or a delay (delivered, relayed, expanded). */
function recipientOf(block: Fields): ReportedRecipient | undefined {
  const action = (block.get('action') ?? '').toLowerCase();
  const status = /^([245])\.\d{1,3}\.\d{1,3}/.exec(block.get('status') ?? '')?.[0] ?? '';
  let kind: BounceKind;
  if (action === 'failed') kind = status.startsWith('4') ? 'soft' : 'hard';
  else if (action === 'delayed') kind = 'soft';
  else return undefined;
  const diagnostic = (block.get('diagnostic-code') ?? '').replace(/^[a-z0-9-]+;\s*/i, '');
  return { address: addressOf(block.get('original-recipient')) ?? addressOf(block.get('final-recipient')), kind, status: status === '' && kind === 'hard' ? '5.0.0' : status, diagnostic };
}

function text(content: ArrayBuffer | Uint8Array | string): string {
  return typeof content === 'string' ? content : Buffer.from(content instanceof Uint8Array ? content : new Uint8Array(content)).toString('utf8');
}

/** The Return-Path of an enclosed original (its headers, or the whole message). */
function returnPathIn(original: string): string | undefined {
  const m = /^Return-Path:[ \t]*<?([^>\s]+)>?/im.exec(original);
  return m?.[1];
}

/** Parses a report; undefined when it is not one (another kind of mail, or too damaged to read). */
export async function parseReport(raw: Buffer | string): Promise<ParsedReport | undefined> {
  let email;
  try {
    email = await PostalMime.parse(raw, { attachmentEncoding: 'arraybuffer' });
  } catch {
    return undefined;
  }
  const parts = email.attachments.map((a) => ({ type: a.mimeType.toLowerCase(), body: text(a.content) }));
  const originals = parts.filter((p) => p.type === 'message/rfc822' || p.type === 'text/rfc822-headers').map((p) => returnPathIn(p.body));
  const status = parts.find((p) => p.type === 'message/delivery-status' || p.type === 'message/global-delivery-status');
  if (status !== undefined) {
    const blocks = fieldBlocks(status.body);
    const recipients = blocks.filter((b) => b.has('final-recipient')).flatMap((b) => recipientOf(b) ?? []);
    return { type: 'delivery-status', recipients, returnPaths: originals.filter((r) => r !== undefined) };
  }
  const feedback = parts.find((p) => p.type === 'message/feedback-report');
  if (feedback !== undefined) {
    const fields = fieldBlocks(feedback.body)[0] ?? new Map<string, string>();
    const type = (fields.get('feedback-type') ?? '').toLowerCase();
    const from = addressOf(fields.get('original-mail-from'));
    const returnPaths = [from, ...originals].filter((r) => r !== undefined);
    if (!COMPLAINTS.has(type)) return { type: 'feedback-report', recipients: [], returnPaths };
    return { type: 'feedback-report', recipients: [{ address: addressOf(fields.get('original-rcpt-to')), kind: 'complaint', status: '', diagnostic: `feedback: ${type}` }], returnPaths };
  }
  return undefined;
}
