// What the SYNC mail path asks of bounce handling: a message for the
// simulator goes there instead of to the relay, and a message the relay (or
// the simulator) took gets a status record while reports can come back for
// it (BOUNCE_DOMAIN set, or simulated), so that a SYNC send's bounce is
// reported like a queued one's. The record carries no text, and no event:
// the caller heard SENT in the reply; a watcher hears of the message from
// its first report on. Records are written in batches (RECORD_EVERY_MS, or
// RECORD_BATCH of them): a record a crash loses costs a report that finds
// nothing, not a message, and one commit per batch keeps SYNC sending at
// the speed it has without BOUNCE_DOMAIN.
import type { Logger } from 'winston';
import type { OutgoingMessage } from '../mail/compose.js';
import type { Delivered, MailJob } from '../mail/job.js';
import type { MailerBounces } from '../mail/mailer.js';
import type { OutboxStore, SentMessage } from '../outbox/store.js';
import { formatReply } from '../smtp/reply.js';
import { traceparentOf } from '../lib/tracing.js';
import { withResolvers } from '../lib/resolvers.js';
import type { ReturnPaths } from './return-path.js';
import { simulated, type Simulator } from './simulator.js';

/** how long a record waits for others to share its commit */
const RECORD_EVERY_MS = 50;
/** records one commit takes at most */
const RECORD_BATCH = 512;

export class SyncMail implements MailerBounces {
  private pending: SentMessage[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** ids of records not yet written, and the write that takes them */
  private readonly unwritten = new Map<string, Promise<void>>();
  private next = withResolvers<void>();

  constructor(
    private readonly store: OutboxStore,
    private readonly paths: ReturnPaths,
    private readonly simulator: Simulator,
    private readonly log: Logger,
  ) {}

  simulate(message: OutgoingMessage): Promise<Delivered> | undefined {
    return simulated(message.envelope.to) ? this.simulator.deliver(message) : undefined;
  }

  sent(job: MailJob, delivered: Delivered): void {
    const returnPath = this.paths.pathOf(job.message);
    if (returnPath === undefined) return;
    const trace = traceparentOf(job.trace);
    this.pending.push({ id: job.message.messageId, caller: job.caller, acceptedAt: job.enqueuedAt, at: Date.now(), attempts: delivered.attempts, response: formatReply(delivered.reply), returnPath, ...(trace !== undefined ? { trace } : {}) });
    this.unwritten.set(job.message.messageId, this.next.answer);
    if (this.pending.length >= RECORD_BATCH) this.flush();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), RECORD_EVERY_MS);
      this.timer.unref();
    }
  }

  /** The write a SYNC message's record waits for, if it is not written yet: a GetMessage right after the reply waits for it rather than finding nothing. */
  written(id: string): Promise<void> | undefined {
    return this.unwritten.get(id);
  }

  /** Writes what is pending (at shutdown too, before the store closes). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    const done = this.next;
    this.pending = [];
    this.next = withResolvers<void>();
    if (batch.length === 0) return Promise.resolve();
    return this.store
      .remember(batch)
      .catch((err: unknown) => {
        this.log.warn('bounces: status records of SYNC messages could not be stored; their delivery reports will find nothing', { records: batch.length, reason: (err as Error).message });
      })
      .finally(() => {
        for (const m of batch) this.unwritten.delete(m.id);
        done.reply.resolve();
      });
  }
}
