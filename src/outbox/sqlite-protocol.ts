// What the outbox's SQLite worker thread and the store in the main thread
// say to each other: batches of operations, each batch one transaction.
import type { Change, NewMessage, StatusEvent } from './store.js';

export type Op =
  | { readonly op: 'accept'; readonly messages: readonly NewMessage[]; readonly now: number }
  | { readonly op: 'claim'; readonly n: number; readonly now: number }
  | { readonly op: 'record'; readonly changes: readonly Change[] }
  | { readonly op: 'cancel'; readonly id: string; readonly caller: string; readonly now: number }
  | { readonly op: 'expire'; readonly now: number; readonly limit: number }
  | { readonly op: 'hasten'; readonly now: number }
  | { readonly op: 'purge'; readonly olderThan: number }
  | { readonly op: 'get'; readonly id: string; readonly caller: string }
  | { readonly op: 'events'; readonly after: string; readonly caller: string; readonly limit: number }
  | { readonly op: 'latest' }
  | { readonly op: 'counts' };

/** Operations that read only: a batch of nothing else needs no transaction. */
export const READS: ReadonlySet<Op['op']> = new Set(['get', 'events', 'latest', 'counts']);

export interface Batch {
  readonly seq: number;
  readonly ops: readonly Op[];
}

export interface WorkerStart {
  readonly path: string;
  readonly maxBytes: number;
  readonly now: number;
  /** how soon after text was deleted the WAL is checkpointed and truncated (its old pages hold the text) */
  readonly scrubMs: number;
}

export type WorkerMessage =
  | { readonly kind: 'ready'; readonly released: number; readonly nextDue: number | undefined }
  | { readonly kind: 'fatal'; readonly message: string }
  | { readonly kind: 'done'; readonly seq: number; readonly results: readonly unknown[]; readonly events: readonly StatusEvent[]; readonly commitMs: number }
  /** the batch's transaction failed as a whole; `full`: the disk (SQLITE_FULL) */
  | { readonly kind: 'failed'; readonly seq: number; readonly full: boolean; readonly message: string };
