// The outbox on SQLite (OUTBOX_PATH, better-sqlite3 in a worker thread: see
// sqlite-worker.ts). Calls made in one turn of the event loop travel as one
// batch, one transaction, one fsync: group commit, so durability does not
// cost a disk flush per call. One batch is in flight at a time, and the
// next gathers while one commits.
//
// Its health is what its last write said. A batch that fails as a whole (a
// full disk, an I/O error) or a worker thread that ends takes it down:
// from then on writes fail at once (reads still go to the worker while
// there is one), outcomes to record are kept in memory, and nothing is
// tried again until the supervisor asks for a probe(): a new worker if the
// old one ended, then the kept outcomes, then a one-row write.
import { Worker } from 'node:worker_threads';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import { READS, type Batch, type Op, type WorkerMessage, type WorkerStart } from './sqlite-protocol.js';
import type { OutboxSettings } from './settings.js';
import type {
  Acceptance,
  Cancellation,
  Change,
  Claimed,
  MessageStatus,
  NewMessage,
  OutboxCounts,
  OutboxStore,
  RelayAway,
  Report,
  ReportOutcome,
  SentMessage,
  StatusEvent,
  StoreHealth,
  SuppressionEntry,
} from './store.js';
import { Listeners } from '../lib/listeners.js';

const WORKER = new URL('./sqlite-worker.js', import.meta.url);
/**
 * Calls that go at once, without waiting for the end of the turn: callers
 * that were answered together come back together, and one read holds a
 * hundred calls; sending the first ones while the rest are still being
 * handled lets their commit overlap that work instead of following it.
 */
const EAGER_BATCH = 32;
/** how long close() waits for what is queued to reach the disk */
const CLOSE_WAIT_MS = 3000;

interface Pending {
  readonly op: Op;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: MailroomError) => void;
  /** kept after a failure, and written once the store is up again, instead of failing */
  readonly persistent: boolean;
}

export interface SqliteOutboxOptions {
  readonly path: string;
  readonly settings: Pick<OutboxSettings, 'retryBaseMs' | 'retryMaxMs' | 'maxBytes' | 'maxBytesPerCaller' | 'bulkShare'>;
  readonly log: Logger;
  /** how soon deleted text leaves the WAL too */
  readonly scrubMs?: number;
  /** hears how long each commit took (metrics) */
  readonly onCommit?: (ms: number) => void;
}

/** What a failed write means: the disk is full (EQUEUEFULL, as a new message is told), or the store cannot write (ESTORE). */
function writeError(code: string, message: string): MailroomError {
  return code === 'SQLITE_FULL'
    ? new MailroomError('EQUEUEFULL', 'the outbox cannot store more: its disk is full', { retryAfterSeconds: 5 })
    : new MailroomError('ESTORE', `the outbox store cannot write: ${message}`);
}

/** A full disk is RESOURCE_EXHAUSTED for a new message only: anything else is told the store cannot answer (ESTORE). */
function errorFor(op: Op, error: MailroomError): MailroomError {
  if (op.op === 'accept' || error.code !== 'EQUEUEFULL') return error;
  return new MailroomError('ESTORE', 'the outbox store cannot write now: its disk is full');
}

export class SqliteOutboxStore implements OutboxStore {
  private worker: Worker | undefined;
  private queue: Pending[] = [];
  private inFlight: Pending[] | undefined;
  /** outcomes a failure left unwritten: written first once the store is up */
  private kept: Pending[] = [];
  private seq = 0;
  private scheduled = false;
  private closed = false;
  /** a worker of this process has opened the store (and given back what a stop left SENDING) */
  private recovered = false;
  private key: Buffer | undefined;
  private current: StoreHealth = { up: false, error: new MailroomError('ESTORE', 'the outbox is not open yet') };
  private readonly eventListeners = new Listeners<readonly StatusEvent[]>();
  private readonly submittedListeners = new Listeners<number>();
  private readonly healthListeners = new Listeners<StoreHealth>();
  private readonly suppressionListeners = new Listeners<{ readonly digest: string; readonly added: boolean }>();

  constructor(private readonly options: SqliteOutboxOptions) {}

  get health(): StoreHealth {
    return this.current;
  }

  async open(now: number): Promise<void> {
    const started = await this.start(now, true);
    if (started.kind === 'fatal') {
      throw new MailroomError('ECONFIG', `invalid configuration:\n  OUTBOX_PATH=${JSON.stringify(this.options.path)}: cannot open the outbox (${started.message})`);
    }
    if (started.kind === 'down') {
      this.setHealth({ up: false, error: writeError(started.code, started.message) });
      this.options.log.error('outbox: the store cannot be opened now; queued mail waits, SYNC mail and codes go on', { path: this.options.path, code: started.code, reason: started.message });
      return;
    }
    if (started.released > 0) this.options.log.warn('outbox: messages a stop left under way are queued again (the relay may have taken some: those may arrive twice)', { released: started.released });
    this.setHealth({ up: true });
  }

  /** Starts a worker thread and waits for its first word. */
  private start(now: number, first: boolean): Promise<Extract<WorkerMessage, { kind: 'ready' | 'fatal' | 'down' }>> {
    const start: WorkerStart = { path: this.options.path, settings: this.options.settings, now, scrubMs: this.options.scrubMs ?? 500, first, recover: !this.recovered };
    const worker = new Worker(WORKER, { workerData: start });
    return new Promise((resolve) => {
      let opened = false;
      worker.on('message', (m: WorkerMessage) => {
        if (m.kind === 'ready' || m.kind === 'fatal' || m.kind === 'down') {
          if (m.kind === 'ready') {
            opened = true;
            this.recovered = true;
            this.key = Buffer.from(m.cursorKey, 'hex');
            this.worker = worker;
          }
          resolve(m);
          return;
        }
        this.answer(m);
      });
      worker.on('error', (err) => {
        if (!opened) resolve({ kind: 'down', code: 'EWORKER', message: err.message });
        else this.lost(worker, `the outbox worker failed: ${err.message}`);
      });
      worker.on('exit', () => {
        if (!opened) resolve({ kind: 'down', code: 'EWORKER', message: 'the outbox worker ended before it opened the store' });
        else this.lost(worker, 'the outbox worker ended');
      });
    });
  }

  async probe(): Promise<void> {
    if (this.closed) throw new MailroomError('ESTORE', 'the outbox store is closed');
    if (this.worker === undefined) {
      const started = await this.start(Date.now(), false);
      if (started.kind !== 'ready') {
        const error = started.kind === 'fatal' ? new MailroomError('ESTORE', `the outbox file is damaged: ${started.message}`) : writeError(started.code, started.message);
        this.setHealth({ up: false, error });
        throw error;
      }
      if (started.released > 0) this.options.log.warn('outbox: messages a stop left under way are queued again (the relay may have taken some: those may arrive twice)', { released: started.released });
    }
    // What could not be written goes first; then a write of one row says the disk takes pages again.
    const kept = this.kept;
    this.kept = [];
    this.queue.unshift(...kept);
    await this.send({ op: 'probe', now: Date.now() }, false, true);
    this.setHealth({ up: true });
  }

  accept(messages: readonly NewMessage[], now: number): Promise<Acceptance[]> {
    const answer = this.call({ op: 'accept', messages, now }) as Promise<Acceptance[]>;
    if (messages.length > 0) this.submittedListeners.tell(Math.min(...messages.map((m) => m.dueAt)));
    return answer;
  }

  claim(n: number, now: number): Promise<{ claimed: Claimed[]; nextDue: number | undefined }> {
    return this.call({ op: 'claim', n, now }) as Promise<{ claimed: Claimed[]; nextDue: number | undefined }>;
  }

  record(changes: readonly Change[]): Promise<number | undefined> {
    return this.call({ op: 'record', changes }, true) as Promise<number | undefined>;
  }

  cancel(id: string, caller: string, now: number): Promise<Cancellation> {
    return this.call({ op: 'cancel', id, caller, now }) as Promise<Cancellation>;
  }

  deferDue(now: number, limit: number, away: RelayAway): Promise<number | undefined> {
    return this.call({ op: 'deferDue', now, limit, away }) as Promise<number | undefined>;
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

  async remember(sent: readonly SentMessage[]): Promise<void> {
    await this.call({ op: 'remember', sent });
  }

  async report(report: Report): Promise<ReportOutcome> {
    const outcome = (await this.call({ op: 'report', report })) as ReportOutcome;
    // Added or there before: either way the mirror holds it.
    if (outcome.kind === 'applied') for (const digest of outcome.suppressed) this.suppressionListeners.tell({ digest, added: true });
    return outcome;
  }

  async suppress(entry: SuppressionEntry): Promise<SuppressionEntry> {
    const stored = (await this.call({ op: 'suppress', entry })) as SuppressionEntry;
    this.suppressionListeners.tell({ digest: entry.digest, added: true });
    return stored;
  }

  async unsuppress(digest: string): Promise<SuppressionEntry | undefined> {
    const was = (await this.call({ op: 'unsuppress', digest })) as SuppressionEntry | undefined;
    this.suppressionListeners.tell({ digest, added: false });
    return was;
  }

  suppression(digest: string): Promise<SuppressionEntry | undefined> {
    return this.call({ op: 'suppression', digest }) as Promise<SuppressionEntry | undefined>;
  }

  suppressions(after: string, limit: number): Promise<SuppressionEntry[]> {
    return this.call({ op: 'suppressions', after, limit }) as Promise<SuppressionEntry[]>;
  }

  onSuppression(listener: (change: { readonly digest: string; readonly added: boolean }) => void): () => void {
    return this.suppressionListeners.add(listener);
  }

  cursorKey(): Promise<Buffer> {
    return this.key !== undefined ? Promise.resolve(this.key) : Promise.reject(this.current.error ?? new MailroomError('ESTORE', 'the outbox store is not open'));
  }

  onEvents(listener: (events: readonly StatusEvent[]) => void): () => void {
    return this.eventListeners.add(listener);
  }

  onSubmitted(listener: (dueAt: number) => void): () => void {
    return this.submittedListeners.add(listener);
  }

  onHealth(listener: (health: StoreHealth) => void): () => void {
    listener(this.current);
    return this.healthListeners.add(listener);
  }

  async close(): Promise<void> {
    // What is queued goes first: the last outcomes must reach the disk.
    const until = Date.now() + CLOSE_WAIT_MS;
    while ((this.queue.length > 0 || this.inFlight !== undefined) && this.worker !== undefined && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    const unwritten = this.kept.length + this.queue.filter((p) => p.persistent).length;
    if (unwritten > 0) this.options.log.error('outbox: outcomes not written at shutdown; those messages go out again after the restart', { batches: unwritten });
    this.closed = true;
    const closed = new MailroomError('ESTORE', 'the outbox store is closed');
    this.failAll([...this.kept, ...this.queue, ...(this.inFlight ?? [])], closed, true);
    this.kept = [];
    this.queue = [];
    this.inFlight = undefined;
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private call(op: Op, persistent = false): Promise<unknown> {
    return this.send(op, persistent, false);
  }

  /** `probing`: the probe's own write, which goes while the store is down. */
  private send(op: Op, persistent: boolean, probing: boolean): Promise<unknown> {
    if (this.closed) return Promise.reject(new MailroomError('ESTORE', 'the outbox store is closed'));
    const read = READS.has(op.op);
    return new Promise((resolve, reject) => {
      const pending: Pending = { op, resolve, reject, persistent };
      if (!probing && !this.current.up && !(read && this.worker !== undefined)) {
        if (persistent) this.kept.push(pending);
        else reject(errorFor(op, this.current.error ?? new MailroomError('ESTORE', 'the outbox store is down')));
        return;
      }
      this.queue.push(pending);
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
    if (message.kind === 'scrub') {
      if (message.ok) this.options.log.info('outbox: deleted text is checkpointed out of the WAL again');
      else this.options.log.warn('outbox: deleted text could not be checkpointed out of the WAL yet; trying again later', { reason: message.message });
      return;
    }
    const batch = this.inFlight;
    if (batch === undefined || (message.kind !== 'done' && message.kind !== 'failed')) return;
    this.inFlight = undefined;
    if (message.kind === 'done') {
      // Reads commit nothing: only a batch that wrote is a commit.
      if (batch.some((p) => !READS.has(p.op.op))) this.options.onCommit?.(message.commitMs);
      batch.forEach((p, i) => p.resolve(message.results[i]));
      if (message.events.length > 0) this.eventListeners.tell(message.events);
    } else {
      const error = writeError(message.code, message.message);
      this.setHealth({ up: false, error });
      this.failAll(batch, error, false);
      // What gathered behind the failed batch meets a store that is down now; reads still go.
      const behind = this.queue;
      this.queue = behind.filter((p) => READS.has(p.op.op));
      this.failAll(
        behind.filter((p) => !READS.has(p.op.op)),
        error,
        false,
      );
    }
    this.schedule();
  }

  /** The worker thread ended: what it held fails (outcomes are kept), and the store is down until a probe starts another. */
  private lost(worker: Worker, why: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    const error = new MailroomError('ESTORE', why);
    if (!this.closed) {
      this.setHealth({ up: false, error });
      this.options.log.error('outbox: its worker thread ended; it is started again once the store is probed', { reason: why });
    }
    const lostBatch = [...(this.inFlight ?? []), ...this.queue];
    this.inFlight = undefined;
    this.queue = [];
    this.failAll(lostBatch, error, false);
  }

  /** Fails `pending`; outcomes to record are kept for the next probe unless `all`. */
  private failAll(pending: readonly Pending[], error: MailroomError, all: boolean): void {
    for (const p of pending) {
      if (p.persistent && !all) this.kept.push(p);
      else p.reject(errorFor(p.op, error));
    }
  }

  private setHealth(health: StoreHealth): void {
    if (health.up === this.current.up && health.error?.message === this.current.error?.message) return;
    this.current = health;
    this.healthListeners.tell(health);
  }
}
