// What a delivery report does to a message's record, for every store: which
// of its items name a recipient of the message (by digest: the store never
// holds an address), the event it takes the record's state by (the chart
// says whether it applies), and which addresses it suppresses.
import { maskAddresses } from '../lib/mask.js';
import { wasSent, type MessageState } from './lifecycle.js';
import type { BounceRecord, Report } from './store.js';

/** what the list shows for an address a complaint redacted (the store never had it in clear) */
const REDACTED = '(redacted by the reporter)';
/** delivery reports one status keeps, the latest */
const MAX_BOUNCES = 50;

export interface Judged {
  /** all the status's reports after this one */
  readonly bounces: readonly BounceRecord[];
  /** undefined: recorded without a move (a soft bounce) */
  readonly event: 'BOUNCE' | 'COMPLAIN' | undefined;
  /** the report's suppressions that name a recipient of the message */
  readonly suppress: Report['suppress'];
}

/** undefined when the report changes nothing: the message was never sent, or it names none of its recipients. */
export function judgeReport(state: MessageState, recipients: readonly string[], before: readonly BounceRecord[], r: Report): Judged | undefined {
  if (!wasSent(state)) return undefined;
  const found: BounceRecord[] = [];
  for (const item of r.items) {
    // An ARF report may redact the recipient: with one recipient there is no doubt which.
    const index = item.digest === undefined ? (recipients.length === 1 ? 0 : -1) : recipients.indexOf(item.digest);
    if (index >= 0) found.push({ recipient: index, kind: item.kind, status: item.status, diagnostic: maskAddresses(item.diagnostic).slice(0, 512), at: r.at });
  }
  const complaint = r.items.some((i) => i.kind === 'complaint');
  if (found.length === 0 && !complaint) return undefined;
  const suppress = r.suppress.filter((s) => recipients.includes(s.digest));
  const redacted = r.items.some((i) => i.kind === 'complaint' && i.digest === undefined);
  if (redacted && r.suppressRedacted && recipients.length === 1) suppress.push({ digest: recipients[0] as string, masked: REDACTED });
  return {
    bounces: [...before, ...found].slice(-MAX_BOUNCES),
    event: complaint ? 'COMPLAIN' : found.some((b) => b.kind === 'hard') ? 'BOUNCE' : undefined,
    suppress,
  };
}
