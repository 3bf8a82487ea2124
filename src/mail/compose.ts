// A validated draft becomes what a connection sends: envelope plus message text.
import type { Address } from './address.js';
import { buildMime, newMessageId } from './mime.js';
import type { Envelope } from './envelope.js';

export interface Draft {
  readonly to: readonly Address[];
  readonly cc: readonly Address[];
  /** envelope only: never written into a header */
  readonly bcc: readonly Address[];
  readonly replyTo: readonly Address[];
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

export interface OutgoingMessage {
  readonly messageId: string;
  readonly envelope: Envelope;
  /** RFC 5322 text with CRLF line ends, not yet dot-stuffed */
  readonly raw: string;
}

export function composeMessage(draft: Draft, from: Address, now: Date = new Date()): OutgoingMessage {
  const messageId = newMessageId(from.address.slice(from.address.lastIndexOf('@') + 1));
  const { to, cc, replyTo, subject, text, html } = draft;
  const raw = buildMime({ from, to, cc, replyTo, subject, text, html, messageId, date: now });
  return { messageId, envelope: { from: from.address, to: envelopeRecipients(draft) }, raw };
}

/** Every recipient once (addresses compare case-insensitively), Bcc included. */
function envelopeRecipients(draft: Draft): string[] {
  const all = draft.cc.length === 0 && draft.bcc.length === 0 ? draft.to : [...draft.to, ...draft.cc, ...draft.bcc];
  if (all.length === 1) return [(all[0] as Address).address];
  const seen = new Set<string>();
  const out: string[] = [];
  for (const a of all) {
    const key = a.address.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(a.address);
  }
  return out;
}
