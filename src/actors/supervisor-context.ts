// The supervisor's shapes: what it starts with, what it holds, what it
// hears and what it tells. Beside its machine (supervisor.ts) so that the
// modules that do its work at length (dispatch.ts, jobs.ts, outbox-work.ts)
// share them without importing the machine.
import type { Observable } from 'rxjs';
import type { Logger } from 'winston';
import type { ErrorCode, MailroomError } from '../errors.js';
import type { TokenBucket } from '../lib/token-bucket.js';
import type { MailJob } from '../mail/job.js';
import type { OutboxRequest, OutboxSettings } from '../outbox/requests.js';
import type { Claimed, OutboxStore } from '../outbox/store.js';
import type { JobLedger } from './job-ledger.js';
import type { Pool } from './pool.js';
import type { ConnectionOptions, ConnectionReport } from './smtp-connection.js';

/** The pool and its queue (config.pool). */
export interface PoolSettings {
  readonly workers: number;
  readonly queueLimit: number;
  /** delivery attempts of a job; retries wait the connections' backoff */
  readonly maxAttempts: number;
  readonly rateLimitPerSecond: number;
  /** a queued job waits at most this long for a connection */
  readonly queueTimeoutMs: number;
  /** once the pool has been down this long with every last dial refused, calls fail at once instead of waiting */
  readonly unreachableAfterMs: number;
}

export interface SupervisorOptions extends PoolSettings {
  /** how long closing connections may take to QUIT after the drain */
  readonly closeTimeoutMs: number;
  readonly connection: ConnectionOptions;
}

/** The durable outbox the supervisor delivers from, when there is one. */
export interface OutboxInput {
  readonly store: OutboxStore;
  readonly requests$: Observable<OutboxRequest>;
  readonly settings: OutboxSettings;
}

export interface SupervisorInput {
  readonly options: SupervisorOptions;
  readonly jobs$: Observable<MailJob>;
  readonly outbox?: OutboxInput;
  readonly log: Logger;
  /** epoch ms for the outbox's times; tests move it instead of sleeping */
  readonly now?: () => number;
}

export type SupervisorEvent =
  | ConnectionReport
  /** the jobs submitted since the last such event, in order (see `feed`) */
  | { type: 'jobs.submitted'; jobs: MailJob[] }
  | { type: 'job.retry'; job: MailJob }
  | { type: 'tick' }
  | { type: 'sweep' }
  | { type: 'shutdown'; timeoutMs: number }
  /** a connection actor crashed (a bug, not a relay fault): start a new one */
  | { type: 'conn.respawn'; cid: string }
  // the outbox:
  | { type: 'outbox.requested'; requests: OutboxRequest[] }
  /** new messages are stored; the earliest of them is due then */
  | { type: 'outbox.accepted'; dueAt: number | undefined }
  | { type: 'outbox.claimed'; claimed: Claimed[]; nextDue: number | undefined }
  /** what is due next changed (the relay is back, a deferral came due) */
  | { type: 'outbox.due'; at: number | undefined }
  /** a claim failed: the store did not answer */
  | { type: 'outbox.unclaimed'; error: MailroomError }
  | { type: 'outbox.wake' };

export type SupervisorEmitted =
  | { type: 'pool.health'; up: number; workers: number }
  /** an outbox job's attempt ended its message: delivered, or failed for good (metrics count it as SendMail's) */
  | { type: 'outbox.settled'; job: MailJob; error: MailroomError | undefined }
  /** a connection lost its session or failed a dial, and will dial again */
  | { type: 'conn.lost'; cid: string; code: ErrorCode };

export interface SupervisorContext {
  readonly options: SupervisorOptions;
  readonly log: Logger;
  readonly jobs$: Observable<MailJob>;
  readonly outbox: OutboxInput | undefined;
  readonly now: () => number;
  readonly ledger: JobLedger;
  readonly pool: Pool;
  readonly bucket: TokenBucket | undefined;
  /** a tick is already scheduled for when the rate limit lets the next job go */
  tickScheduled: boolean;
  /** why a connection last went down, and which: the reason given to jobs that time out in the queue */
  lastDown: { cid: string; error: MailroomError } | undefined;
  shutdownTimeoutMs: number;
  /** until a first connection authenticates: the failure last logged, logged again only when it changes */
  unreachableCode: ErrorCode | undefined;
  /** whether any connection ever came up; after that, health changes speak for the pool */
  reachedOnce: boolean;
  /** epoch ms when the pool last lost its last connection */
  downSince: number;
  /** the earliest the outbox has a message due (outbox clock); undefined: none known */
  outboxDueAt: number | undefined;
}

/** What xstate sends a parent when a child actor fails: `xstate.error.actor.<id>`. */
export interface ChildError {
  readonly type: string;
  readonly error: unknown;
}
