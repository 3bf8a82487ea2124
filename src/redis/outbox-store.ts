// The outbox in Redis (OUTBOX_STORE=redis), shared by replicas: any replica
// delivers any message and answers any status. Two parts: the queue engine
// (outbox-queue.ts, BullMQ: text, schedule, leases) and the status records
// (outbox-status.ts: what callers read and watch, changed only as the
// message machine allows). This file is the store's one face to the rest:
// each call in the order a message lives it, the store's health, and what
// an outage costs.
//
// Durability is Redis's: run it with appendonly yes and appendfsync always,
// and under Sentinel with a replica: with OUTBOX_REDIS_MIN_REPLICAS (1 under
// Sentinel) a message is answered QUEUED only once a replica has it (WAIT),
// so that a failover loses nothing acknowledged. A Redis that comes back
// empty is told loudly (RedisLink.onReset), with how many messages this
// replica knew were still to be sent.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import { Listeners } from '../lib/listeners.js';
import { maskAddresses } from '../lib/mask.js';
import { advance } from '../outbox/lifecycle.js';
import { isAbsence, nextAttemptAt } from '../outbox/policy.js';
import type { OutboxSettings } from '../outbox/settings.js';
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
} from '../outbox/store.js';
import { RedisSuppressions } from './suppressions.js';
import { OutboxReports } from './outbox-reports.js';
import { OutboxIntake } from './outbox-intake.js';
import type { RedisLink } from './client.js';
import { laneOf, OutboxQueue, ownerOf, traceOf, type JobData } from './outbox-queue.js';
import { digest, OutboxStatuses } from './outbox-status.js';

export interface RedisOutboxOptions extends Pick<OutboxSettings, 'maxBytes' | 'maxBytesPerCaller' | 'retentionMs' | 'maxAgeMs' | 'retryBaseMs' | 'retryMaxMs' | 'bulkShare'> {
  readonly leaseMs: number;
  /** hears how many messages a Redis that came back empty took with it (metrics) */
  readonly onLost?: (messages: number) => void;
}

/** how often a replica with nothing due looks for work other replicas queued */
const POLL_MS = 1000;
const YEAR_MS = 365 * 86_400_000;
/** how often this replica notes how many messages are still to be sent (what a reset would take) */
const KNOWN_MS = 1000;

export class RedisOutboxStore implements OutboxStore {
  private readonly queue: OutboxQueue;
  private readonly statuses: OutboxStatuses;
  private readonly suppressionList: RedisSuppressions;
  private readonly reports: OutboxReports;
  private readonly intake: OutboxIntake;
  private readonly submitted = new Listeners<number>();
  /** outcomes a failure left unwritten: written first by the next probe */
  private kept: Change[] = [];
  /** messages still to be sent when last counted: what a Redis that comes back empty took */
  private known = 0;
  private counter: NodeJS.Timeout | undefined;
  private key: Buffer | undefined;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly link: RedisLink,
    private readonly options: RedisOutboxOptions,
    private readonly log: Logger,
  ) {
    this.queue = new OutboxQueue(link, options.leaseMs, options.bulkShare, log);
    this.statuses = new OutboxStatuses(link, options.retentionMs);
    this.suppressionList = new RedisSuppressions(link);
    this.reports = new OutboxReports(link, this.statuses, this.suppressionList);
    this.intake = new OutboxIntake(link, this.statuses, this.queue.turns, options);
  }

  get health(): StoreHealth {
    return this.link.ready ? { up: true } : { up: false, error: new MailroomError('ESTORE', 'the outbox store (Redis) is unreachable') };
  }

  onHealth(listener: (health: StoreHealth) => void): () => void {
    return this.link.onHealth(() => listener(this.health));
  }

  onSubmitted(listener: (dueAt: number) => void): () => void {
    return this.submitted.add(listener);
  }

  onEvents(listener: (events: readonly StatusEvent[]) => void): () => void {
    return this.statuses.onEvents(listener);
  }

  /** Opens the queue and the event channel; Redis may be away: they connect when it is back. */
  async open(_now: number): Promise<void> {
    await this.queue.open();
    void this.statuses.listen().catch((err: unknown) => this.log.warn('outbox: not listening for events yet', { reason: (err as Error).message }));
    void this.suppressionList.listen().catch((err: unknown) => this.log.warn('outbox: not listening for suppressions yet', { reason: (err as Error).message }));
    this.unsubscribe.push(this.link.onReset(() => this.reset()));
    this.counter = setInterval(() => void this.count(), KNOWN_MS);
    this.counter.unref();
  }

  async probe(): Promise<void> {
    await this.link.run('ping', (c) => c.ping());
    const kept = this.kept;
    this.kept = [];
    await this.record(kept);
  }

  async accept(messages: readonly NewMessage[], now: number): Promise<Acceptance[]> {
    const answers: Acceptance[] = [];
    const taken: { m: NewMessage; member: string; bytes: number; turn: number }[] = [];
    for (const m of messages) {
      const refused = await this.intake.admit(m);
      if (refused !== undefined) answers.push(refused);
      else {
        const bytes = Buffer.byteLength(m.raw) + Buffer.byteLength(JSON.stringify(m.envelope));
        const reserved = await this.intake.reserve(m.owner, m.lane, bytes);
        if (!('turn' in reserved)) {
          if (m.idempotency !== undefined) await this.link.run('outbox idempotency', (c) => c.del(this.statuses.key('idem', m.idempotency?.key ?? '')));
          answers.push(reserved);
          continue;
        }
        taken.push({ m, member: digest(m.id), bytes, turn: reserved.turn });
        answers.push({ kind: 'accepted', status: { id: m.id, state: 'queued', attempts: 0, lastResponse: '', errorCode: '', acceptedAt: m.acceptedAt, updatedAt: m.acceptedAt, nextAttemptAt: m.dueAt } });
      }
    }
    // The job (the text) first: a status without its job would be a message nobody sends.
    await this.link.run('outbox add', () =>
      this.queue.add(
        taken.map(({ m, member, turn }) => ({
          member,
          turn,
          data: { id: m.id, caller: m.caller, owner: m.owner, lane: m.lane, envelope: m.envelope, raw: m.raw, acceptedAt: m.acceptedAt, expiresAt: m.expiresAt } satisfies JobData,
          trace: m.trace,
          delay: Math.max(0, m.dueAt - now),
          lane: m.lane,
        })),
      ),
    );
    const events: StatusEvent[] = [];
    for (const { m, member, bytes } of taken) {
      events.push(await this.statuses.create(m, member, bytes));
      if (m.returnPath !== undefined) await this.reports.returnPath(member, m.returnPath, this.options.maxAgeMs + this.options.retentionMs, m.trace);
    }
    // Acknowledged only once enough replicas hold it: a failover then loses nothing answered QUEUED.
    await this.link.replicated('the message', '; it may still go out: retry with the same idempotency_key');
    await this.statuses.notify(events);
    if (taken.length > 0) this.submitted.tell(Math.min(...taken.map(({ m }) => m.dueAt)));
    return answers;
  }

  async claim(n: number, now: number): Promise<{ claimed: Claimed[]; nextDue: number | undefined }> {
    const claimed: Claimed[] = [];
    const events: StatusEvent[] = [];
    for (let i = 0; i < n; i++) {
      const lease = await this.link.run('outbox claim', () => this.queue.next());
      if (lease === undefined) break;
      const data = lease.job.data;
      const member = lease.job.id ?? digest(data.id);
      // A job that comes back from a replica that died holding it is SENDING in its status: released, then claimed anew.
      let result = await this.statuses.move(data.id, member, data.caller, 'CLAIM', now);
      if (result !== undefined && 'refused' in result && result.refused === 'sending') {
        await this.statuses.move(data.id, member, data.caller, 'RELEASE', now);
        result = await this.statuses.move(data.id, member, data.caller, 'CLAIM', now);
      }
      if (result === undefined || 'refused' in result) {
        // Its status is final (cancelled or expired as the job was fetched): the job goes.
        await this.queue.finish(lease).catch(() => undefined);
        continue;
      }
      events.push({ cursor: result.cursor, status: result.status });
      const trace = traceOf(lease.job);
      claimed.push({ id: data.id, caller: data.caller, owner: ownerOf(data), lane: laneOf(data), envelope: data.envelope, raw: data.raw, attempts: result.status.attempts, acceptedAt: data.acceptedAt, expiresAt: data.expiresAt, ...(trace !== undefined ? { trace } : {}) });
    }
    await this.statuses.notify(events);
    // A claim a failover loses comes back when its lease runs out; waiting for a replica makes that rare, and is not worth failing the claim for.
    if (claimed.length > 0) await this.link.replicated('the claim').catch((err: unknown) => this.log.warn('outbox: a claim is not on a replica yet', { reason: (err as Error).message }));
    return { claimed, nextDue: claimed.length < n ? now + POLL_MS : now };
  }

  /**
   * Writes outcomes; what cannot be written now (or is not yet on a
   * replica) is kept for the next probe, and written again then: writing an
   * outcome twice changes nothing the second time.
   */
  async record(changes: readonly Change[]): Promise<number | undefined> {
    let due: number | undefined;
    for (const [i, change] of changes.entries()) {
      try {
        const at = await this.recordOne(change);
        if (at !== undefined) due = Math.min(due ?? at, at);
      } catch (err) {
        this.kept.push(...changes.slice(i));
        throw err;
      }
    }
    try {
      await this.link.replicated('the outcome');
    } catch (err) {
      this.kept.push(...changes);
      throw err;
    }
    return due;
  }

  /** Writes one outcome; when the message is due again if it was deferred or released. */
  private async recordOne(c: Change): Promise<number | undefined> {
    const lease = this.queue.holds(c.id);
    const member = digest(c.id);
    const [storedCaller, attempts, expiresAt] = await this.statuses.fields(member, 'caller', 'attempts', 'expires_at');
    const caller = lease?.job.data.caller ?? storedCaller ?? '';
    // When a deferred message goes again is the policy's, from the attempts this one makes.
    const dueAt =
      c.event === 'DEFER'
        ? nextAttemptAt({ at: c.at, attempts: Number(attempts ?? 0) + (c.attempted === true ? 1 : 0), expiresAt: Number(expiresAt ?? c.at), retryAt: c.retryAt }, this.options)
        : c.event === 'RELEASE'
          ? c.at
          : undefined;
    const result = await this.statuses.move(c.id, member, caller, c.event, c.at, {
      attempted: c.attempted === true,
      ...(c.response !== undefined ? { response: maskAddresses(c.response).slice(0, 512) } : {}),
      ...(c.errorCode !== undefined ? { errorCode: c.errorCode } : {}),
      ...(dueAt !== undefined ? { dueAt } : {}),
      ...(c.connection !== undefined ? { connection: c.connection } : {}),
      absent: c.event === 'DEFER' && c.errorCode !== undefined && isAbsence(c.errorCode),
    });
    if (lease !== undefined) await this.link.run('outbox settle', () => this.queue.settle(lease, c.event === 'DEFER' ? (dueAt ?? c.at) : c.event === 'RELEASE' ? 'now' : 'final'));
    if (result !== undefined && !('refused' in result)) await this.statuses.notify([{ cursor: result.cursor, status: result.status, ...(c.connection !== undefined ? { connection: c.connection } : {}) }]);
    return dueAt;
  }

  async cancel(id: string, caller: string, now: number): Promise<Cancellation> {
    const status = await this.statuses.get(id, caller);
    if (status === undefined) return { kind: 'unknown' };
    if (advance(status.state, 'CANCEL') === undefined) return { kind: 'refused', status };
    // A job a replica holds is locked: it cannot be removed, it is SENDING.
    if (!(await this.link.run('outbox cancel', () => this.queue.remove(digest(id))))) return { kind: 'refused', status: (await this.statuses.get(id, caller)) ?? status };
    const result = await this.statuses.move(id, digest(id), caller, 'CANCEL', now);
    if (result === undefined) return { kind: 'unknown' };
    if ('refused' in result) return { kind: 'refused', status: (await this.statuses.get(id, caller)) ?? status };
    await this.statuses.notify([{ cursor: result.cursor, status: result.status }]);
    return { kind: 'cancelled', status: result.status };
  }

  async deferDue(now: number, limit: number, away: RelayAway): Promise<number | undefined> {
    // What is due is what waits in the queue; it stays there (any replica may
    // take it when the relay is back), and its status says why it waits.
    const retryAt = Math.max(away.retryAt, now + 1);
    const events: StatusEvent[] = [];
    for (const job of await this.link.run('outbox waiting', () => this.queue.waiting(limit))) {
      const member = job.id ?? digest(job.data.id);
      const [state, code] = await this.statuses.fields(member, 'state', 'error_code');
      if (state === 'deferred' && isAbsence(code ?? '')) {
        await this.statuses.due(member, retryAt);
        continue;
      }
      const result = await this.statuses.move(job.data.id, member, job.data.caller, 'DEFER', now, { response: away.response, errorCode: away.errorCode, dueAt: Math.min(retryAt, job.data.expiresAt), absent: true });
      if (result !== undefined && !('refused' in result)) events.push({ cursor: result.cursor, status: result.status });
    }
    await this.statuses.notify(events);
    return retryAt;
  }

  async expire(now: number, limit: number): Promise<number> {
    let expired = 0;
    for (const member of await this.statuses.expired(now, limit)) {
      const [caller, id] = await this.statuses.fields(member, 'caller', 'id');
      if (id === undefined) {
        await this.statuses.forget(member);
        continue;
      }
      // Held by a replica right now: its outcome decides.
      if (!(await this.link.run('outbox expire', () => this.queue.remove(member)))) continue;
      const result = await this.statuses.move(id, member, caller ?? '', 'EXPIRE', now, { errorCode: 'EEXPIRED' });
      if (result !== undefined && !('refused' in result)) {
        expired++;
        await this.statuses.notify([{ cursor: result.cursor, status: result.status }]);
      }
    }
    return expired;
  }

  async hasten(now: number): Promise<number | undefined> {
    for (const member of await this.statuses.absent()) {
      await this.link.run('outbox hasten', () => this.queue.promote(member));
      await this.statuses.due(member, now);
      await this.statuses.present(member);
    }
    return now;
  }

  purge(olderThan: number): Promise<void> {
    return this.statuses.purge(olderThan);
  }

  get(id: string, caller: string): Promise<MessageStatus | undefined> {
    return this.statuses.get(id, caller);
  }

  events(after: string, caller: string, limit: number): Promise<StatusEvent[]> {
    return this.statuses.eventsAfter(after, caller, limit);
  }

  latest(caller: string): Promise<string> {
    return this.statuses.latest(caller);
  }

  counts(): Promise<OutboxCounts> {
    return this.statuses.counts();
  }

  remember(sent: readonly SentMessage[]): Promise<void> {
    return this.reports.remember(sent);
  }

  report(r: Report): Promise<ReportOutcome> {
    return this.reports.report(r);
  }

  suppress(entry: SuppressionEntry): Promise<SuppressionEntry> {
    return this.suppressionList.add(entry);
  }

  unsuppress(digest: string): Promise<SuppressionEntry | undefined> {
    return this.suppressionList.remove(digest);
  }

  suppression(digest: string): Promise<SuppressionEntry | undefined> {
    return this.suppressionList.get(digest);
  }

  suppressions(after: string, limit: number): Promise<SuppressionEntry[]> {
    return this.suppressionList.page(after, limit);
  }

  onSuppression(listener: (change: { readonly digest: string; readonly added: boolean }) => void): () => void {
    return this.suppressionList.onChange(listener);
  }

  /** The cursor key every replica shares: made once, kept a year past its last use. */
  async cursorKey(): Promise<Buffer> {
    if (this.key !== undefined) return this.key;
    const name = this.statuses.key('cursor-key');
    const hex = await this.link.run('outbox cursor key', async (c) => {
      await c.set(name, randomBytes(32).toString('hex'), 'PX', YEAR_MS, 'NX');
      await c.pexpire(name, YEAR_MS);
      return c.get(name);
    });
    if (hex === null) throw new MailroomError('ESTORE', 'the outbox cursor key is gone from Redis');
    this.key = Buffer.from(hex, 'hex');
    return this.key;
  }

  async close(): Promise<void> {
    clearInterval(this.counter);
    for (const u of this.unsubscribe.splice(0)) u();
    if (this.kept.length > 0) this.log.error('outbox: outcomes not written at shutdown; those messages go out again after their leases', { outcomes: this.kept.length });
    await this.queue.close();
    await this.statuses.close();
    await this.suppressionList.close();
  }

  /** How many messages are still to be sent, as far as this replica last saw. */
  private async count(): Promise<void> {
    if (!this.link.ready) return;
    const counts = await this.statuses.counts().catch(() => undefined);
    if (counts !== undefined) this.known = counts.states.queued + counts.states.deferred + counts.states.sending;
  }

  /** Redis came back without our data: what it held is gone, and the operator must hear how much. */
  private reset(): void {
    this.queue.forgetHeld();
    // Cursors minted under the lost key no longer open: watchers start again from now.
    this.key = undefined;
    this.log.error('outbox: Redis came back empty: the queued messages it held are gone', { lost: this.known });
    this.options.onLost?.(this.known);
    this.known = 0;
  }
}

