// SuppressionService: the suppression list by hand (bounce/suppression-list.ts).
// Who may call it is the authenticator's decision (a token marked admin);
// an address is taken in full and answered masked, as the inspector shows it.
import { MailroomError } from '../errors.js';
import type { Suppression } from '../generated/mail/Suppression.js';
import type { SuppressionReason as WireReason } from '../generated/mail/SuppressionReason.js';
import type { SuppressionServiceHandlers } from '../generated/mail/SuppressionService.js';
import type { SuppressionEntry, SuppressionReason } from '../outbox/store.js';
import type { SuppressionList } from '../bounce/suppression-list.js';
import type { Calls, OpenCall } from './calls.js';
import { timestamp } from './message-status.js';

const WIRE_REASON: Readonly<Record<SuppressionReason, WireReason>> = { bounce: 'SUPPRESSION_REASON_BOUNCE', complaint: 'SUPPRESSION_REASON_COMPLAINT', manual: 'SUPPRESSION_REASON_MANUAL' };
const REASON: Readonly<Record<string, SuppressionReason>> = {
  SUPPRESSION_REASON_UNSPECIFIED: 'manual',
  SUPPRESSION_REASON_MANUAL: 'manual',
  SUPPRESSION_REASON_BOUNCE: 'bounce',
  SUPPRESSION_REASON_COMPLAINT: 'complaint',
};
const PAGE_DEFAULT = 100;
const PAGE_MAX = 1000;
/** a page token: the last digest of the page before */
const PAGE_TOKEN = /^[A-Za-z0-9_-]{22}$/;
const MAX_ADDRESS_CHARS = 320;

function wire(e: SuppressionEntry): Suppression {
  return { address: e.masked, reason: WIRE_REASON[e.reason], since: timestamp(e.since), message_id: e.messageId };
}

function address(raw: string): string {
  if (raw.length > MAX_ADDRESS_CHARS) throw new MailroomError('EINVALID', `address: at most ${MAX_ADDRESS_CHARS} characters`);
  return raw;
}

function notSuppressed(): MailroomError {
  return new MailroomError('ENOTFOUND', 'the address is not on the suppression list');
}

export function suppressionServiceHandlers(deps: { readonly list: SuppressionList; readonly calls: Calls; readonly now?: () => number }): SuppressionServiceHandlers {
  const { list, calls } = deps;
  const now = deps.now ?? Date.now;
  /** Runs `work` for a call: its answer, or the error it threw or rejected with. */
  const answer = <T>(callback: Parameters<typeof calls.open<T>>[0], work: () => Promise<T>): void => {
    const open: OpenCall<T> | undefined = calls.open(callback);
    if (open === undefined) return;
    let pending: Promise<T>;
    try {
      pending = work();
    } catch (err) {
      open.fail(err);
      return;
    }
    pending.then(
      (value) => open.ok(value),
      (err: unknown) => open.fail(err),
    );
  };
  return {
    AddSuppression(call, callback) {
      answer(callback, async () => {
        const reason = REASON[call.request.reason];
        if (reason === undefined) throw new MailroomError('EINVALID', 'reason: a SuppressionReason');
        return wire(await list.add(address(call.request.address), reason, reason === 'manual' ? '' : call.request.message_id, now()));
      });
    },
    RemoveSuppression(call, callback) {
      answer(callback, async () => {
        const was = await list.remove(address(call.request.address));
        if (was === undefined) throw notSuppressed();
        return wire(was);
      });
    },
    GetSuppression(call, callback) {
      answer(callback, async () => {
        const entry = await list.get(address(call.request.address));
        if (entry === undefined) throw notSuppressed();
        return wire(entry);
      });
    },
    ListSuppressions(call, callback) {
      answer(callback, async () => {
        const { page_size: size, page_token: token } = call.request;
        if (size > PAGE_MAX) throw new MailroomError('EINVALID', `page_size: at most ${PAGE_MAX} (0: ${PAGE_DEFAULT})`);
        if (token !== '' && !PAGE_TOKEN.test(token)) throw new MailroomError('EINVALID', 'page_token: a next_page_token from an earlier answer, or empty');
        const limit = size === 0 ? PAGE_DEFAULT : size;
        const page = await list.list(token, limit);
        return { suppressions: page.map(wire), next_page_token: page.length === limit ? (page[page.length - 1] as SuppressionEntry).digest : '' };
      });
    },
  };
}
