// The outbox on SQLite (OUTBOX_PATH, better-sqlite3 in a worker thread: see
// sqlite-worker.ts). Calls made in one turn of the event loop travel as one
// batch, one transaction, one fsync: group commit, so durability does not
// cost a disk flush per call. One batch is in flight at a time, and the
// next gathers while it commits. A batch that fails as a whole (a full
// disk) fails its calls, except the recording of outcomes, which is tried
// again until it is written: an outcome must not be lost.
import { Worker } from 'node:worker_threads';
import { MailroomError } from '../errors.js';
import type { Batch, Op, WorkerMessage, WorkerStart } from './sqlite-protocol.js';
import type { Acceptance, Cancellation, Change, Claimed, MessageStatus, NewMessage, OutboxCounts, OutboxStore, StatusEvent } from './store.js';

const WORKER = new URL('./sqlite-worker.js', import.meta.url);
/** how long a failed recording of outcomes waits before it is tried again */
const RETRY_MS = 1000;
/**
 * Calls that go at once, without waiting for the end of the turn: callers
 * that were answered together come back together, and one read holds a
 * hundred calls; sending the first ones while the rest are still being
 * handled lets their commit overlap that work instead of following it.
 */
const EAGER_BATCH = 32;

interface Pending {
  readonly op: Op;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: MailroomError) => void;
  /** tried again after a failed batch instead of failing */
  readonly persistent: boolean;
}

export interface SqliteOutboxOptions {
  readonly path: string;
  readonly maxBytes: number;
  /** how soon deleted text leaves the WAL too */
  readonly scrubMs?: number;
  /** hears how long each commit took (metrics) */
  readonly onCommit?: (ms: number) => void;
}

export class SqliteOutboxStore implements OutboxStore {
  private worker: Worker | undefined;
  private queue: Pending[] = [];
  private inFlight: Pending[] | undefined;
  private seq = 0;
  private scheduled = false;
  private broken: MailroomError | undefined;
  private readonly listeners = new Set<(events: readonly StatusEvent[]) => void>();

  constructor(private readonly options: SqliteOutboxOptions) {}

  open(now: number): Promise<{ released: number; nextDue: number | undefined }> {
    const start: WorkerStart = { path: this.options.path, maxBytes: this.options.maxBytes, now, scrubMs: this.options.scrubMs ?? 500 };
    const worker = new Worker(WORKER, { workerData: start });
    this.worker = worker;
    return new Promise((resolve, reject) => {
      const first = (message: WorkerMessage): void => {
        if (message.kind === 'ready') {
          worker.on('message', (m: WorkerMessage) => this.answer(m));
          resolve({ released: message.released, nextDue: message.nextDue });
        } else if (message.kind === 'fatal') {
          reject(new MailroomError('ECONFIG', `invalid configuration:\n  OUTBOX_PATH=${JSON.stringify(this.options.path)}: cannot open the outbox (${message.message})`));
        }
      };
      worker.once('message', first);
      worker.on('error', (err) => {
        const error = new MailroomError('EUNAVAILABLE', `the outbox store failed: ${err.message}`, { cause: err });
        this.broken = error;
        reject(error);
        this.failAll(error);
      });
      worker.on('exit', () => {
        this.broken ??= new MailroomError('EUNAVAILABLE', 'the outbox store is closed');
        this.failAll(this.broken);
      });
    });
  }

  accept(messages: readonly NewMessage[], now: number): Promise<Acceptance[]> {
    return this.call({ op: 'accept', messages, now }) as Promise<Acceptance[]>;
  }

  claim(n: number, now: number): Promise<{ claimed: Claimed[]; nextDue: number | undefined }> {
    return this.call({ op: 'claim', n, now }) as Promise<{ claimed: Claimed[]; nextDue: number | undefined }>;
  }

  async record(changes: readonly Change[]): Promise<void> {
    await this.call({ op: 'record', changes }, true);
  }

  cancel(id: string, caller: string, now: number): Promise<Cancellation> {
    return this.call({ op: 'cancel', id, caller, now }) as Promise<Cancellation>;
  }

  expire(now: number, limit: number): Promise<number> {
    return this.call({ op: 'expire', now, limit }) as Promise<number>;
  }

  hasten(now: number): Promise<number | undefined> {
    return this.call({ op: 'hasten', now }) as Promise<number | undefined>;
  }

  async purge(olderThan: number): Promise<void> {
    await this.call({ op: 'purge', olderThan });
  }

  get(id: string, caller: string): Promise<MessageStatus | undefined> {
    return this.call({ op: 'get', id, caller }) as Promise<MessageStatus | undefined>;
  }

  events(after: string, caller: string, limit: number): Promise<StatusEvent[]> {
    return this.call({ op: 'events', after, caller, limit }) as Promise<StatusEvent[]>;
  }

  /** Cursors are one sequence for every caller here. */
  latest(): Promise<string> {
    return this.call({ op: 'latest' }) as Promise<string>;
  }

  counts(): Promise<OutboxCounts> {
    return this.call({ op: 'counts' }) as Promise<OutboxCounts>;
  }

  onEvents(listener: (events: readonly StatusEvent[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    // What is queued goes first: the last outcomes must reach the disk.
    while ((this.queue.length > 0 || this.inFlight !== undefined) && this.broken === undefined) await new Promise((r) => setTimeout(r, 5));
    this.broken ??= new MailroomError('EUNAVAILABLE', 'the outbox store is closed');
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private call(op: Op, persistent = false): Promise<unknown> {
    if (this.broken !== undefined) return Promise.reject(this.broken);
    return new Promise((resolve, reject) => {
      this.queue.push({ op, resolve, reject, persistent });
      this.schedule();
    });
  }

  /** Sends what gathered in this turn once the turn's I/O is done (or at once when it is EAGER_BATCH), unless a batch is in flight (its reply sends the next). */
  private schedule(): void {
    if (this.inFlight === undefined && this.queue.length >= EAGER_BATCH) {
      this.flush();
      return;
    }
    if (this.scheduled || this.inFlight !== undefined) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    const worker = this.worker;
    if (this.inFlight !== undefined || this.queue.length === 0 || worker === undefined) return;
    const batch = this.queue;
    this.queue = [];
    this.inFlight = batch;
    worker.postMessage({ seq: ++this.seq, ops: batch.map((p) => p.op) } satisfies Batch);
  }

  private answer(message: WorkerMessage): void {
    const batch = this.inFlight;
    if (batch === undefined || (message.kind !== 'done' && message.kind !== 'failed')) return;
    this.inFlight = undefined;
    if (message.kind === 'done') {
      this.options.onCommit?.(message.commitMs);
      batch.forEach((p, i) => p.resolve(message.results[i]));
      if (message.events.length > 0) for (const listener of this.listeners) listener(message.events);
    } else {
      const error = message.full
        ? new MailroomError('EQUEUEFULL', 'the outbox cannot be written: its disk is full', { retryAfterSeconds: 5 })
        : new MailroomError('EUNAVAILABLE', `the outbox could not be written: ${message.message}`);
      const again: Pending[] = [];
      for (const p of batch) {
        if (p.persistent) again.push(p);
        else p.reject(error);
      }
      if (again.length > 0) {
        setTimeout(() => {
          this.queue.unshift(...again);
          this.schedule();
        }, RETRY_MS).unref();
      }
    }
    this.schedule();
  }

  private failAll(error: MailroomError): void {
    for (const p of [...(this.inFlight ?? []), ...this.queue]) p.reject(error);
    this.inFlight = undefined;
    this.queue = [];
  }
}
