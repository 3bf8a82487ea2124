// The outbox in Redis (OUTBOX_STORE=redis), shared by replicas: any replica
// delivers any message and answers any status. BullMQ is the queue engine:
// a job holds the message's text and envelope, its schedule (delayed until
// send_at or its next attempt) and, while a replica sends it, that
// replica's lease (a lock of OUTBOX_LEASE_SECONDS, extended while held). A
// replica that dies mid-send loses its locks; BullMQ's stalled check gives
// the job back, and another replica claims it. The job is removed when the
// message is final, its text with it. Beside it, per message, a status
// hash; per caller, an event stream (watchers resume from its ids); and
// indexes for expiry, the oldest queued, and what waited for the relay.
// Each change of a status is one script (outbox-scripts.ts); the machine in
// outbox/lifecycle.ts says which moves an event allows. Durability is
// Redis's: run it with appendonly yes and appendfsync always (the README's
// replicas page), or an acknowledged message may be lost with Redis.
import { createHash, randomUUID } from 'node:crypto';
import { Queue, Worker, createNodeRedisClient, type Job } from 'bullmq';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import { Listeners } from '../lib/listeners.js';
import { maskAddresses } from '../lib/mask.js';
import type { Envelope } from '../mail/envelope.js';
import { advance, MESSAGE_STATES, type MessageEventType, type MessageState } from '../outbox/lifecycle.js';
import { isAbsence, nextAttemptAt, statusOf } from '../outbox/policy.js';
import type { OutboxSettings } from '../outbox/settings.js';
import type { Acceptance, Cancellation, Change, Claimed, MessageStatus, NewMessage, OutboxCounts, OutboxStore, RelayAway, StatusEvent, StoreHealth } from '../outbox/store.js';
import type { Redis, RedisLink } from './client.js';

interface JobData {
  readonly id: string;
  readonly caller: string;
  readonly envelope: Envelope;
  readonly raw: string;
  readonly acceptedAt: number;
  readonly expiresAt: number;
}

export interface RedisOutboxOptions extends Pick<OutboxSettings, 'maxBytes' | 'retentionMs' | 'maxAgeMs' | 'retryBaseMs' | 'retryMaxMs'> {
  readonly leaseMs: number;
}

/** how often a replica with nothing due looks for work other replicas queued */
const POLL_MS = 1000;
/** how long a failed recording of outcomes waits before it is tried again */
const RETRY_MS = 500;

const digest = (s: string): string => createHash('sha256').update(s).digest('base64url');

/** The moves the message machine allows for `event`, as the script reads them: "queued=sending,deferred=sending". */
function moves(event: MessageEventType): string {
  return MESSAGE_STATES.flatMap((from) => {
    const to = advance(from, event);
    return to === undefined ? [] : [`${from}=${to}`];
  }).join(',');
}

/** A script's answer as a status and its event. */
function moved(reply: unknown): { status: MessageStatus; cursor: string } | { refused: MessageState } | undefined {
  if (!Array.isArray(reply)) return undefined;
  if (Number(reply[0]) !== 1) return { refused: String(reply[1]) as MessageState };
  const [, cursor, state, attempts, lastResponse, errorCode, acceptedAt, updatedAt, dueAt] = reply.map(String);
  return {
    cursor: cursor as string,
    status: { id: '', state: state as MessageState, attempts: Number(attempts), lastResponse: lastResponse ?? '', errorCode: errorCode ?? '', acceptedAt: Number(acceptedAt), updatedAt: Number(updatedAt), nextAttemptAt: Number(dueAt) },
  };
}


export class RedisOutboxStore implements OutboxStore {
  private readonly client: Redis;
  private queue: Queue | undefined;
  private worker: Worker | undefined;
  private subscriber: Redis | undefined;
  /** the connections this store opened (BullMQ leaves the ones it is given open) */
  private readonly connections: Redis[] = [];
  /** the jobs this replica holds (claimed, outcome not yet recorded), with their lock tokens */
  private readonly held = new Map<string, { job: Job; token: string }>();
  private extender: NodeJS.Timeout | undefined;
  private readonly listeners = new Listeners<readonly StatusEvent[]>();
  private readonly submitted = new Listeners<number>();
  private closed = false;

  constructor(
    private readonly link: RedisLink,
    private readonly options: RedisOutboxOptions,
    private readonly log: Logger,
  ) {
    this.client = link.client;
  }

  private key(...parts: string[]): string {
    return this.link.key('outbox', ...parts);
  }

  private keys(member: string, caller: string): string[] {
    return [
      this.key('m', member),
      this.stream(caller),
      this.key('counts'),
      this.key('live'),
      this.key('queued'),
      this.key('absent'),
      this.key('streams'),
      this.key('bytes'),
    ];
  }

  private stream(caller: string): string {
    return this.key('events', digest(caller));
  }

  get health(): StoreHealth {
    return this.link.ready ? { up: true } : { up: false, error: new MailroomError('ESTORE', 'Redis is unreachable') };
  }

  onHealth(listener: (health: StoreHealth) => void): () => void {
    return this.link.onHealth(() => listener(this.health));
  }

  onSubmitted(listener: (dueAt: number) => void): () => void {
    return this.submitted.add(listener);
  }

  async probe(): Promise<void> {
    await this.link.run('ping', (c) => c.ping());
  }

  async open(_now: number): Promise<void> {
    const prefix = this.link.key('bull');
    const connect = async (): Promise<Redis> => {
      const c = this.client.duplicate();
      // Outages are the main link's to report (and health's to show).
      c.on('error', () => undefined);
      this.connections.push(c);
      await c.connect();
      return c;
    };
    this.queue = new Queue('outbox', { connection: createNodeRedisClient(await connect()), prefix });
    // Fetched by hand (getNextJob): the supervisor claims when its connections have room.
    this.worker = new Worker('outbox', null, { connection: createNodeRedisClient(await connect()), prefix, autorun: false, lockDuration: this.options.leaseMs, stalledInterval: Math.min(this.options.leaseMs, 30_000), maxStalledCount: 1_000_000 });
    this.worker.on('error', (err) => this.log.warn('outbox: queue worker error', { reason: err.message }));
    void this.worker.startStalledCheckTimer();
    this.extender = setInterval(() => void this.extendLeases(), Math.max(100, Math.floor(this.options.leaseMs / 3)));
    this.extender.unref();
    const subscriber = await connect();
    this.subscriber = subscriber;
    await subscriber.subscribe(this.key('notify'), (message) => this.listeners.tell(JSON.parse(message) as StatusEvent[]));
  }

  async accept(messages: readonly NewMessage[], now: number): Promise<Acceptance[]> {
    const queue = this.open$();
    const answers: Acceptance[] = [];
    const events: StatusEvent[] = [];
    const jobs: { m: NewMessage; member: string; bytes: number }[] = [];
    for (const m of messages) {
      const member = digest(m.id);
      if (m.idempotency !== undefined) {
        const key = this.key('idem', m.idempotency.key);
        const claimed = await this.client.set(key, JSON.stringify({ id: m.id, fingerprint: m.idempotency.fingerprint }), { NX: true, PX: this.options.maxAgeMs + this.options.retentionMs });
        if (claimed === null) {
          const before = JSON.parse((await this.client.get(key)) ?? '{}') as { id?: string; fingerprint?: string };
          const status = before.id === undefined ? undefined : await this.get(before.id, m.caller);
          answers.push(before.fingerprint === m.idempotency.fingerprint && status !== undefined ? { kind: 'existing', status } : { kind: 'conflict' });
          continue;
        }
      }
      const bytes = Buffer.byteLength(m.raw) + Buffer.byteLength(JSON.stringify(m.envelope));
      const total = await this.client.incrBy(this.key('bytes'), bytes);
      if (total > this.options.maxBytes) {
        await this.client.decrBy(this.key('bytes'), bytes);
        if (m.idempotency !== undefined) await this.client.del(this.key('idem', m.idempotency.key));
        answers.push({ kind: 'full', bytes: total - bytes });
        continue;
      }
      jobs.push({ m, member, bytes });
      answers.push({ kind: 'accepted', status: { id: m.id, state: 'queued', attempts: 0, lastResponse: '', errorCode: '', acceptedAt: m.acceptedAt, updatedAt: m.acceptedAt, nextAttemptAt: m.dueAt } });
    }
    // The job (the text) first: a status without its job would be a message nobody sends.
    await queue.addBulk(
      jobs.map(({ m, member }) => ({
        name: 'message',
        data: { id: m.id, caller: m.caller, envelope: m.envelope, raw: m.raw, acceptedAt: m.acceptedAt, expiresAt: m.expiresAt } satisfies JobData,
        opts: { jobId: member, delay: Math.max(0, m.dueAt - now), removeOnComplete: true, removeOnFail: true },
      })),
    );
    for (const { m, member, bytes } of jobs) {
      const cursor = await this.client.outboxCreate(this.keys(member, m.caller), m.id, m.caller, String(m.acceptedAt), String(m.dueAt), String(m.expiresAt), member, String(bytes));
      events.push({ cursor, status: { id: m.id, state: 'queued', attempts: 0, lastResponse: '', errorCode: '', acceptedAt: m.acceptedAt, updatedAt: m.acceptedAt, nextAttemptAt: m.dueAt } });
    }
    await this.notify(events);
    if (jobs.length > 0) this.submitted.tell(Math.min(...jobs.map(({ m }) => m.dueAt)));
    return answers;
  }

  async claim(n: number, now: number): Promise<{ claimed: Claimed[]; nextDue: number | undefined }> {
    const worker = this.worker;
    if (worker === undefined) throw this.closedError();
    const claimed: Claimed[] = [];
    const events: StatusEvent[] = [];
    for (let i = 0; i < n; i++) {
      const token = randomUUID();
      const job = (await worker.getNextJob(token, { block: false })) as Job<JobData> | undefined;
      if (job === undefined) break;
      const data = job.data;
      const member = job.id ?? digest(data.id);
      // A job that comes back from a replica that died holding it is SENDING in its status: released, then claimed anew.
      let result = moved(await this.move(member, data.caller, 'CLAIM', now, {}));
      if (result !== undefined && 'refused' in result && result.refused === 'sending') {
        await this.move(member, data.caller, 'RELEASE', now, {});
        result = moved(await this.move(member, data.caller, 'CLAIM', now, {}));
      }
      if (result === undefined || 'refused' in result) {
        // Its status is final (cancelled or expired as the job was fetched): the job goes.
        await job.moveToCompleted('', token, false).catch(() => undefined);
        continue;
      }
      this.held.set(data.id, { job, token });
      events.push({ cursor: result.cursor, status: { ...result.status, id: data.id } });
      claimed.push({ id: data.id, caller: data.caller, envelope: data.envelope, raw: data.raw, attempts: result.status.attempts, acceptedAt: data.acceptedAt, expiresAt: data.expiresAt });
    }
    await this.notify(events);
    return { claimed, nextDue: claimed.length < n ? now + POLL_MS : now };
  }

  async record(changes: readonly Change[]): Promise<number | undefined> {
    let due: number | undefined;
    for (const change of changes) {
      for (;;) {
        try {
          const at = await this.recordOne(change);
          if (at !== undefined) due = Math.min(due ?? at, at);
          break;
        } catch (err) {
          if (this.closed) throw err;
          this.log.warn('outbox: an outcome was not recorded; trying again', { reason: (err as Error).message });
          await new Promise((r) => setTimeout(r, RETRY_MS));
        }
      }
    }
    return due;
  }

  /** Writes one outcome; when the message is due again if it was deferred or released. */
  private async recordOne(c: Change): Promise<number | undefined> {
    const held = this.held.get(c.id);
    const member = digest(c.id);
    const [storedCaller, attempts, expiresAt] = await this.client.hmGet(this.key('m', member), ['caller', 'attempts', 'expires_at']);
    const caller = (held?.job.data as JobData | undefined)?.caller ?? storedCaller ?? '';
    // When a deferred message goes again is the policy's, from the attempts this one makes.
    const dueAt =
      c.event === 'DEFER'
        ? nextAttemptAt({ at: c.at, attempts: Number(attempts ?? 0) + (c.attempted === true ? 1 : 0), expiresAt: Number(expiresAt ?? c.at), retryAt: c.retryAt }, this.options)
        : c.event === 'RELEASE'
          ? c.at
          : undefined;
    const result = moved(
      await this.move(member, caller, c.event, c.at, {
        attempted: c.attempted === true,
        ...(c.response !== undefined ? { response: maskAddresses(c.response).slice(0, 512) } : {}),
        ...(c.errorCode !== undefined ? { errorCode: c.errorCode } : {}),
        ...(dueAt !== undefined ? { dueAt } : {}),
        ...(c.connection !== undefined ? { connection: c.connection } : {}),
        absent: c.event === 'DEFER' && c.errorCode !== undefined && isAbsence(c.errorCode),
      }),
    );
    if (held !== undefined) {
      const { job, token } = held;
      if (c.event === 'DEFER') await job.moveToDelayed(dueAt ?? c.at, token);
      else if (c.event === 'RELEASE') await job.moveToWait(token);
      else await job.moveToCompleted('', token, false);
      this.held.delete(c.id);
    }
    if (result !== undefined && !('refused' in result)) await this.notify([{ cursor: result.cursor, status: { ...result.status, id: c.id }, ...(c.connection !== undefined ? { connection: c.connection } : {}) }]);
    return dueAt;
  }

  async cancel(id: string, caller: string, now: number): Promise<Cancellation> {
    const status = await this.get(id, caller);
    if (status === undefined) return { kind: 'unknown' };
    if (advance(status.state, 'CANCEL') === undefined) return { kind: 'refused', status };
    // A job a replica holds is locked: it cannot be removed, it is SENDING.
    const job = await this.open$().getJob(digest(id));
    if (job !== undefined) {
      try {
        await job.remove();
      } catch {
        return { kind: 'refused', status: (await this.get(id, caller)) ?? status };
      }
    }
    const result = moved(await this.move(digest(id), caller, 'CANCEL', now, {}));
    if (result === undefined) return { kind: 'unknown' };
    if ('refused' in result) return { kind: 'refused', status: (await this.get(id, caller)) ?? status };
    const cancelled = { ...result.status, id };
    await this.notify([{ cursor: result.cursor, status: cancelled }]);
    return { kind: 'cancelled', status: cancelled };
  }

  async expire(now: number, limit: number): Promise<number> {
    const members = await this.client.zRangeByScore(this.key('live'), '-inf', now, { LIMIT: { offset: 0, count: limit } });
    let expired = 0;
    for (const member of members) {
      const [caller, id] = await this.client.hmGet(this.key('m', member), ['caller', 'id']);
      if (id === null || id === undefined) {
        await this.client.zRem(this.key('live'), member);
        continue;
      }
      const job = await this.open$().getJob(member);
      try {
        await job?.remove();
      } catch {
        continue; // held by a replica right now: its outcome decides
      }
      const result = moved(await this.move(member, caller ?? '', 'EXPIRE', now, { errorCode: 'EEXPIRED' }));
      if (result !== undefined && !('refused' in result)) {
        expired++;
        await this.notify([{ cursor: result.cursor, status: { ...result.status, id } }]);
      }
    }
    return expired;
  }

  async deferDue(now: number, limit: number, away: RelayAway): Promise<number | undefined> {
    // What is due is what waits in the queue; it stays there (any replica may
    // take it when the relay is back), and its status says why it waits.
    const retryAt = Math.max(away.retryAt, now + 1);
    for (const job of (await this.open$().getWaiting(0, limit - 1)) as Job<JobData>[]) {
      const member = job.id ?? digest(job.data.id);
      const [state, code] = await this.client.hmGet(this.key('m', member), ['state', 'error_code']);
      if (state === 'deferred' && isAbsence(code ?? '')) {
        await this.client.outboxDue([this.key('m', member)], String(retryAt));
        continue;
      }
      const result = moved(await this.move(member, job.data.caller, 'DEFER', now, { response: away.response, errorCode: away.errorCode, dueAt: Math.min(retryAt, job.data.expiresAt), absent: true }));
      if (result !== undefined && !('refused' in result)) await this.notify([{ cursor: result.cursor, status: { ...result.status, id: job.data.id } }]);
    }
    return retryAt;
  }

  async hasten(now: number): Promise<number | undefined> {
    const members = await this.client.sMembers(this.key('absent'));
    for (const member of members) {
      const job = await this.open$().getJob(member);
      if (job !== undefined && (await job.getState()) === 'delayed') await job.promote().catch(() => undefined);
      await this.client.outboxDue([this.key('m', member)], String(now));
      await this.client.sRem(this.key('absent'), member);
    }
    return now;
  }

  async purge(olderThan: number): Promise<void> {
    // Statuses expire by themselves (PEXPIRE when final); the event streams are trimmed by age.
    for (const stream of await this.client.sMembers(this.key('streams'))) await this.client.xTrim(stream, 'MINID', String(olderThan));
  }

  async get(id: string, caller: string): Promise<MessageStatus | undefined> {
    const h = await this.client.hGetAll(this.key('m', digest(id)));
    return h.state === undefined || h.caller !== caller ? undefined : statusOf(h);
  }

  async events(after: string, caller: string, limit: number): Promise<StatusEvent[]> {
    const start = after === '' || after === '0' ? '-' : `(${after}`;
    const entries = await this.client.xRange(this.stream(caller), start, '+', { COUNT: limit });
    return (entries ?? []).map(({ id, message: m }) => ({
      cursor: id,
      status: {
        id: m.id ?? '',
        state: m.state as MessageState,
        attempts: Number(m.attempts),
        lastResponse: m.last_response ?? '',
        errorCode: m.error_code ?? '',
        acceptedAt: Number(m.accepted_at),
        updatedAt: Number(m.updated_at),
        nextAttemptAt: Number(m.next_attempt_at),
      },
      ...(m.connection !== undefined ? { connection: m.connection } : {}),
    }));
  }

  async latest(caller: string): Promise<string> {
    const last = await this.client.xRevRange(this.stream(caller), '+', '-', { COUNT: 1 });
    return last?.[0]?.id ?? '0';
  }

  async counts(): Promise<OutboxCounts> {
    const raw = await this.client.hGetAll(this.key('counts'));
    const states = Object.fromEntries(MESSAGE_STATES.map((s) => [s, Math.max(0, Number(raw[s] ?? 0))])) as Record<MessageState, number>;
    const oldest = await this.client.zRangeWithScores(this.key('queued'), 0, 0);
    return { states, oldestQueuedAt: oldest[0]?.score, bytes: Number((await this.client.get(this.key('bytes'))) ?? 0) };
  }

  onEvents(listener: (events: readonly StatusEvent[]) => void): () => void {
    return this.listeners.add(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.extender);
    await this.worker?.close(true).catch(() => undefined);
    await this.queue?.close().catch(() => undefined);
    for (const c of this.connections.splice(0)) await c.close().catch(() => c.destroy());
    this.worker = undefined;
    this.queue = undefined;
  }

  private move(
    member: string,
    caller: string,
    event: MessageEventType,
    at: number,
    o: { attempted?: boolean; response?: string; errorCode?: string; dueAt?: number; connection?: string; absent?: boolean },
  ): Promise<unknown> {
    return this.client.outboxMove(
      this.keys(member, caller),
      moves(event),
      String(at),
      o.attempted === true ? '1' : '0',
      o.response !== undefined ? '1' : '0',
      o.response ?? '',
      o.errorCode !== undefined ? '1' : '0',
      o.errorCode ?? '',
      o.dueAt !== undefined ? String(o.dueAt) : '',
      o.connection ?? '',
      String(this.options.retentionMs),
      member,
      o.absent === true ? '1' : '0',
    );
  }

  private async notify(events: readonly StatusEvent[]): Promise<void> {
    if (events.length > 0) await this.client.publish(this.key('notify'), JSON.stringify(events));
  }

  /** The leases on what this replica holds run on while it holds them. */
  private async extendLeases(): Promise<void> {
    if (this.worker === undefined || this.held.size === 0) return;
    const ids: string[] = [];
    const tokens: string[] = [];
    for (const { job, token } of this.held.values()) {
      if (job.id === undefined) continue;
      ids.push(job.id);
      tokens.push(token);
    }
    await this.worker.extendJobLocks(ids, tokens, this.options.leaseMs).catch((err: unknown) => this.log.warn('outbox: leases not extended', { reason: (err as Error).message }));
  }

  private open$(): Queue {
    if (this.queue === undefined) throw this.closedError();
    return this.queue;
  }

  private closedError(): MailroomError {
    return new MailroomError('EUNAVAILABLE', 'the outbox is closed');
  }
}
