// The outbox's rules, once, for every store (SQLite here, Redis for
// replicas): which failures mean the relay was away rather than that it
// refused the message, when a deferred message is due again, and how a
// stored record reads as a status. The chart (lifecycle.ts) says which
// moves are allowed; this says what goes with them.
import type { ErrorCode } from '../errors.js';
import { backoffDelay } from '../lib/backoff.js';
import type { MessageState } from './lifecycle.js';
import type { OutboxSettings } from './settings.js';
import type { BounceRecord, MessageStatus } from './store.js';

/**
 * Losses that mean the relay was away, not that it refused this message:
 * what they deferred is due at once when the relay is back.
 */
export const ABSENCE: readonly ErrorCode[] = ['ECONNECTION', 'ETIMEDOUT', 'ETLS', 'EAUTH', 'EUNAVAILABLE', 'ESTALE', 'ESHUTDOWN'];

const absence: ReadonlySet<string> = new Set(ABSENCE);

export function isAbsence(code: string): boolean {
  return absence.has(code);
}

/** most messages one claim takes: a claim is one transaction, and a long one holds the writer */
export const CLAIM_MAX = 256;

/**
 * When a deferred message is tried again: at the relay's next dial when it
 * was deferred for the relay's absence (`retryAt`), else after the retry
 * backoff for the attempts it has had; never after it expires (it then
 * fails EEXPIRED instead).
 */
export function nextAttemptAt(
  o: { readonly at: number; readonly attempts: number; readonly expiresAt: number; readonly retryAt?: number | undefined },
  settings: Pick<OutboxSettings, 'retryBaseMs' | 'retryMaxMs'>,
  random: () => number = Math.random,
): number {
  const next = o.retryAt ?? o.at + backoffDelay(Math.max(1, o.attempts), settings.retryBaseMs, settings.retryMaxMs, random);
  return Math.min(next, o.expiresAt);
}

/** A stored record's fields, as SQLite's row or Redis's hash hold them (numbers, or their text). */
export interface StoredRecord {
  readonly id?: string | undefined;
  readonly state?: string | undefined;
  readonly attempts?: number | string | undefined;
  readonly last_response?: string | undefined;
  readonly error_code?: string | undefined;
  readonly accepted_at?: number | string | undefined;
  readonly updated_at?: number | string | undefined;
  readonly due_at?: number | string | undefined;
  /** JSON of BounceRecord[] */
  readonly bounces?: string | null | undefined;
}

/** A record as a status: next_attempt_at only where the message waits for one. */
export function statusOf(r: StoredRecord): MessageStatus {
  const state = r.state as MessageState;
  return {
    id: r.id ?? '',
    state,
    attempts: Number(r.attempts ?? 0),
    lastResponse: r.last_response ?? '',
    errorCode: r.error_code ?? '',
    acceptedAt: Number(r.accepted_at ?? 0),
    updatedAt: Number(r.updated_at ?? 0),
    nextAttemptAt: state === 'queued' || state === 'deferred' ? Number(r.due_at ?? 0) : 0,
    ...(typeof r.bounces === 'string' && r.bounces !== '' ? { bounces: JSON.parse(r.bounces) as BounceRecord[] } : {}),
  };
}
