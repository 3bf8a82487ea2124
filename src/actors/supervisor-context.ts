// The supervisor's shapes: what it starts with, what it holds, what it
// hears and what it tells. Beside its machine (supervisor.ts) so that the
// modules that do its work at length (dispatch.ts, jobs.ts, outbox-feeder.ts)
// share them without importing the machine.
import type { Observable } from 'rxjs';
import type { Logger } from 'winston';
import type { ErrorCode, MailroomError } from '../errors.js';
import type { MailJob } from '../mail/job.js';
import type { OutboxSettings } from '../outbox/settings.js';
import type { RelayPace } from '../smtp/relay-pace.js';
import type { Change, OutboxStore } from '../outbox/store.js';
import type { Simulator } from '../bounce/simulator.js';
import type { JobLedger } from './job-ledger.js';
import type { OutboxReport } from './outbox-feeder.js';
import type { Pool } from './pool.js';
import type { ConnectionOptions, ConnectionReport } from './smtp-connection.js';

/** The pool and its queue (config.pool). */
export interface PoolSettings {
  readonly workers: number;
  readonly queueLimit: number;
  /** what one caller's jobs may take of it */
  readonly queueLimitPerCaller: number;
  /** LANE_BULK_MIN_SHARE: the least share of deliveries bulk gets while it has work */
  readonly bulkShare: number;
  /** delivery attempts of a job; retries wait the connections' backoff */
  readonly maxAttempts: number;
  readonly rateLimitPerSecond: number;
  /** while a relay's "slow down" holds the pace, each this long of clean replies adds a step back */
  readonly paceRecoverMs: number;
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
  /** the mailbox simulator (bounce/simulator.ts): its messages are settled by the outbox child, never sent */
  readonly simulator?: Simulator | undefined;
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
  /** the rate limit lets the next job go */
  | { type: 'tick' }
  | { type: 'sweep' }
  | { type: 'shutdown'; timeoutMs: number }
  /** a connection actor crashed (a bug, not a relay fault): start a new one */
  | { type: 'conn.respawn'; cid: string }
  // the outbox (from its child, outbox-feeder.ts):
  | OutboxReport;

export type SupervisorEmitted =
  | { type: 'pool.health'; up: number; workers: number }
  /** an outbox job's attempt ended: delivered, or how it failed (deferred when transient) */
  | { type: 'outbox.attempted'; job: MailJob; error: MailroomError | undefined }
  /** the outbox store can write, or cannot (why) */
  | { type: 'outbox.health'; up: boolean; error: MailroomError | undefined }
  /** the relay slowed the pace (messages a second), or the pace is back where it was (undefined: none) */
  | { type: 'relay.pace'; perSecond: number | undefined; slowed: boolean }
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
  /** how fast the pool may send: the ceiling, and the relay's say (relay-pace.ts) */
  readonly pace: RelayPace;
  /** why a connection last went down, and which: the reason given to jobs that time out in the queue */
  lastDown: { cid: string; error: MailroomError } | undefined;
  shutdownTimeoutMs: number;
  /** what the outbox child was last offered, and the last claim taken in (see outbox-feeder.ts) */
  offered: number;
  seenClaim: number;
  /** outcomes of outbox jobs not yet handed to the outbox child */
  changes: Change[];
  /** failed store probes in a row: the next probe waits a backoff of this many */
  storeFailures: number;
}

/** What xstate sends a parent when a child actor fails: `xstate.error.actor.<id>`. */
export interface ChildError {
  readonly type: string;
  readonly error: unknown;
}
