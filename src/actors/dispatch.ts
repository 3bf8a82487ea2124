// Which queued job goes to which connection, and when a queued job has
// waited too long. Plain functions over the supervisor's ledger and pool;
// the supervisor's machine decides when they run.
import { MailroomError } from '../errors.js';
import type { MailJob } from '../mail/job.js';
import type { JobLedger } from './job-ledger.js';
import type { SmtpConnectionActor } from './smtp-connection.js';
import type { SupervisorContext } from './supervisor-context.js';

type DispatchState = Pick<SupervisorContext, 'ledger' | 'pool' | 'pace'>;

/** The effects dispatch needs, as xstate's enqueueActions offers them. */
export interface DispatchEffects {
  give(ref: SmtpConnectionActor, job: MailJob): void;
  /** the rate limit lets the next job go in `ms` */
  pace(ms: number): void;
}

export function fail(job: MailJob, code: MailroomError['code'], message: string, cause?: MailroomError): void {
  job.reject(new MailroomError(code, message, { cause, smtp: cause?.smtp }));
}

/**
 * Hands queued jobs, oldest first, to connections that can take them while
 * both exist and the rate limit allows. A busy connection with room gets
 * one only when no connection is idle, never under a rate limit (the tick
 * hands jobs out one by one), and never a job that came back from a stale
 * connection: the job pipelined behind another is the one a relay that
 * closes right behind its 250 catches.
 */
export function dispatch(state: DispatchState, effects: DispatchEffects): void {
  const { ledger, pool, pace } = state;
  for (let job = ledger.peek(); job !== undefined; job = ledger.peek()) {
    if (job.settled()) {
      ledger.drop(); // its caller gave up while it was queued
      continue;
    }
    const now = Date.now();
    if (now >= job.deadline) {
      ledger.drop();
      fail(job, 'EDEADLINE', 'deadline passed before a connection was free');
      continue;
    }
    if (pace.limited) {
      if (!pool.hasIdle) return;
      const wait = pace.take(now);
      if (wait > 0) {
        effects.pace(wait);
        return;
      }
    }
    const cid = pool.pick(job.lastCid, !pace.limited && job.staleRequeues === 0);
    if (cid === undefined) return;
    effects.give(pool.ref(cid), ledger.hand(cid));
  }
}

/**
 * How many outbox messages the connections could start now, beyond the
 * jobs already waiting for them: what the outbox may claim (SENDING means
 * held by a connection). Under a rate limit, jobs go one at a time to idle
 * connections only.
 */
export function room(state: Pick<SupervisorContext, 'ledger' | 'pool' | 'pace'>): number {
  const { ledger, pool, pace } = state;
  if (ledger.queued > 0) return 0;
  return pace.limited ? pool.idleCount : pool.free;
}

/** Fails what a caller waited on too long: past its deadline, or longer than QUEUE_TIMEOUT_MS (an outbox job waits as long as it must). */
export function sweepQueue(ledger: JobLedger, queueTimeoutMs: number, down: MailroomError | undefined): void {
  const now = Date.now();
  for (const job of ledger.removeQueued((j) => j.durable === undefined && (j.settled() || now >= j.deadline || now - j.enqueuedAt >= queueTimeoutMs))) {
    if (now >= job.deadline) fail(job, 'EDEADLINE', 'deadline passed while queued');
    else {
      const why = down === undefined ? '' : `: ${down.message}`;
      fail(job, 'EUNAVAILABLE', `no SMTP connection could take the message within ${queueTimeoutMs} ms${why}`, down);
    }
  }
}
