// What the outbox's SQLite worker thread and the store in the main thread
// say to each other: batches of operations, each batch one transaction.
import type { Change, NewMessage, RelayAway, Report, SentMessage, StatusEvent, SuppressionEntry } from './store.js';
import type { OutboxSettings } from './settings.js';

export type Op =
  | { readonly op: 'accept'; readonly messages: readonly NewMessage[]; readonly now: number }
  | { readonly op: 'claim'; readonly n: number; readonly now: number }
  | { readonly op: 'record'; readonly changes: readonly Change[] }
  | { readonly op: 'cancel'; readonly id: string; readonly caller: string; readonly now: number }
  | { readonly op: 'deferDue'; readonly now: number; readonly limit: number; readonly away: RelayAway }
  | { readonly op: 'expire'; readonly now: number; readonly limit: number }
  | { readonly op: 'hasten'; readonly now: number }
  | { readonly op: 'purge'; readonly olderThan: number }
  | { readonly op: 'probe'; readonly now: number }
  | { readonly op: 'get'; readonly id: string; readonly caller: string }
  | { readonly op: 'events'; readonly after: string; readonly caller: string; readonly limit: number }
  | { readonly op: 'latest' }
  | { readonly op: 'counts' }
  | { readonly op: 'remember'; readonly sent: readonly SentMessage[] }
  | { readonly op: 'report'; readonly report: Report }
  | { readonly op: 'suppress'; readonly entry: SuppressionEntry }
  | { readonly op: 'unsuppress'; readonly digest: string }
  | { readonly op: 'suppression'; readonly digest: string }
  | { readonly op: 'suppressions'; readonly after: string; readonly limit: number };

/** Operations that read only: a batch of nothing else needs no transaction, and runs while the disk is full. */
export const READS: ReadonlySet<Op['op']> = new Set(['get', 'events', 'latest', 'counts', 'suppression', 'suppressions']);

export interface Batch {
  readonly seq: number;
  readonly ops: readonly Op[];
}

export interface WorkerStart {
  readonly path: string;
  readonly settings: Pick<OutboxSettings, 'retryBaseMs' | 'retryMaxMs' | 'maxBytes' | 'maxBytesPerCaller' | 'bulkShare'>;
  readonly now: number;
  /** how soon after text was deleted the WAL is checkpointed and truncated (its old pages hold the text) */
  readonly scrubMs: number;
  /** the first open of this process: a database that cannot be opened is a configuration fault, not an outage */
  readonly first: boolean;
  /** give back what a stop left SENDING: no worker of this process has opened the store yet */
  readonly recover: boolean;
}

export type WorkerMessage =
  | { readonly kind: 'ready'; readonly released: number; readonly nextDue: number | undefined; readonly cursorKey: string }
  /** the file is damaged or not ours: the service must not start on it */
  | { readonly kind: 'fatal'; readonly message: string }
  /** it cannot be opened now (a full disk, an I/O error): the thread ends, a probe starts another */
  | { readonly kind: 'down'; readonly code: string; readonly message: string }
  | { readonly kind: 'done'; readonly seq: number; readonly results: readonly unknown[]; readonly events: readonly StatusEvent[]; readonly commitMs: number }
  /** the batch's transaction failed as a whole; `code`: SQLite's (SQLITE_FULL for a full disk) */
  | { readonly kind: 'failed'; readonly seq: number; readonly code: string; readonly message: string }
  /** deleted text could not be checkpointed out of the WAL yet; tried again later */
  | { readonly kind: 'scrub'; readonly ok: boolean; readonly message: string };
