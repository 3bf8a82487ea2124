// The Redis outbox's status records: per message a hash (what GetMessage
// answers), per caller an event stream (what WatchMessages reads; the
// cursor is the stream's id), and the indexes that find what expires, what
// is queued and what waited for the relay. Every change is one script
// (outbox-scripts.ts), applied only where the message machine allows it.
// Committed events are published, so that every replica's watchers hear
// of them.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { advance, MESSAGE_STATES, wasSent, type MessageEventType, type MessageState } from '../outbox/lifecycle.js';
import { statusOf } from '../outbox/policy.js';
import type { MessageStatus, NewMessage, OutboxCounts, SentMessage, StatusEvent } from '../outbox/store.js';
import { Listeners } from '../lib/listeners.js';
import { Script, type RedisLink } from './client.js';
import { OUTBOX_CREATE, OUTBOX_DUE, OUTBOX_MOVE, OUTBOX_SENT } from './outbox-scripts.js';

const SCRIPTS = { create: new Script(OUTBOX_CREATE), move: new Script(OUTBOX_MOVE), due: new Script(OUTBOX_DUE), sent: new Script(OUTBOX_SENT) };

export const digest = (s: string): string => createHash('sha256').update(s).digest('base64url');

/**
 * The moves the message machine allows for `event`, as the script reads
 * them: "queued=sending,deferred=sending"; for none (a delivery report that
 * moves nothing) a sent message stays where it is.
 */
function moves(event: MessageEventType | undefined): string {
  return MESSAGE_STATES.flatMap((from) => {
    const to = event === undefined ? (wasSent(from) ? from : undefined) : advance(from, event);
    return to === undefined ? [] : [`${from}=${to}`];
  }).join(',');
}

/** `stale`: refused because the reports were no longer those read (MoveFields.readBounces) */
export type Moved = { readonly status: MessageStatus; readonly cursor: string } | { readonly refused: MessageState; readonly stale?: true } | undefined;

/** A script's answer as a status and its event. */
function moved(reply: unknown, id: string): Moved {
  if (!Array.isArray(reply)) return undefined;
  if (Number(reply[0]) === 2) return { refused: String(reply[1]) as MessageState, stale: true };
  if (Number(reply[0]) !== 1) return { refused: String(reply[1]) as MessageState };
  const [, cursor, state, attempts, lastResponse, errorCode, acceptedAt, updatedAt, dueAt, bounces] = reply.map(String);
  return { cursor: cursor as string, status: statusOf({ id, state, attempts, last_response: lastResponse, error_code: errorCode, accepted_at: acceptedAt, updated_at: updatedAt, due_at: dueAt, bounces }) };
}

export interface MoveFields {
  readonly attempted?: boolean;
  readonly response?: string;
  readonly errorCode?: string;
  readonly dueAt?: number;
  readonly connection?: string;
  /** deferred for the relay's absence: made due at once when it is back */
  readonly absent?: boolean;
  /** JSON of the status's delivery reports, all of them (a report) */
  readonly bounces?: string;
  /** the reports as read before they were judged: no move if another report has changed them since */
  readonly readBounces?: string;
}

export class OutboxStatuses {
  private readonly events = new Listeners<readonly StatusEvent[]>();
  private subscriber: Redis | undefined;

  constructor(
    private readonly link: RedisLink,
    private readonly retentionMs: number,
  ) {}

  key(...parts: string[]): string {
    return this.link.key('outbox', ...parts);
  }

  private stream(caller: string): string {
    return this.key('events', digest(caller));
  }

  private keys(member: string, caller: string): string[] {
    return [this.key('m', member), this.stream(caller), this.key('counts'), this.key('live'), this.key('queued'), this.key('absent'), this.key('streams'), this.key('bytes')];
  }

  /** Hears the events every replica commits. */
  async listen(): Promise<void> {
    const subscriber = this.link.client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null });
    subscriber.on('error', () => undefined);
    subscriber.on('message', (_channel: string, message: string) => this.events.tell(JSON.parse(message) as StatusEvent[]));
    this.subscriber = subscriber;
    await subscriber.subscribe(this.key('notify'));
  }

  onEvents(listener: (events: readonly StatusEvent[]) => void): () => void {
    return this.events.add(listener);
  }

  async notify(events: readonly StatusEvent[]): Promise<void> {
    if (events.length > 0) await this.link.run('publish', (c) => c.publish(this.key('notify'), JSON.stringify(events)));
  }

  /** The counter of `owner`'s stored bytes (OUTBOX_MAX_BYTES_PER_CALLER). */
  ownerBytes(owner: string): string {
    return this.key('bytes', digest(owner));
  }

  async create(m: NewMessage, member: string, bytes: number): Promise<StatusEvent> {
    const cursor = String(await this.link.eval('outbox create', SCRIPTS.create, this.keys(member, m.caller), [m.id, m.caller, m.acceptedAt, m.dueAt, m.expiresAt, member, bytes, this.ownerBytes(m.owner)]));
    return { cursor, status: statusOf({ id: m.id, state: 'queued', attempts: 0, accepted_at: m.acceptedAt, updated_at: m.acceptedAt, due_at: m.dueAt }) };
  }

  /** The key that finds a message by its return path (bounce/return-path.ts). */
  bounceKey(key: string): string {
    return this.key('verp', key);
  }

  /** The status record of a SYNC message the relay took (no event). */
  async sent(m: SentMessage): Promise<void> {
    const member = digest(m.id);
    await this.link.eval('outbox sent', SCRIPTS.sent, this.keys(member, m.caller), [
      m.id,
      m.caller,
      m.acceptedAt,
      m.at,
      m.attempts,
      m.response,
      member,
      this.retentionMs,
      this.bounceKey(m.returnPath.key),
      JSON.stringify(m.returnPath.recipients),
      m.trace ?? '',
    ]);
  }

  /** Moves a record by `event` (when the chart allows it), with its event in the caller's stream. */
  async move(id: string, member: string, caller: string, event: MessageEventType | undefined, at: number, o: MoveFields = {}): Promise<Moved> {
    const reply = await this.link.eval('outbox move', SCRIPTS.move, this.keys(member, caller), [
      moves(event),
      at,
      o.attempted === true ? '1' : '0',
      o.response !== undefined ? '1' : '0',
      o.response ?? '',
      o.errorCode !== undefined ? '1' : '0',
      o.errorCode ?? '',
      o.dueAt !== undefined ? String(o.dueAt) : '',
      o.connection ?? '',
      this.retentionMs,
      member,
      o.absent === true ? '1' : '0',
      o.bounces ?? '',
      o.readBounces !== undefined ? '1' : '0',
      o.readBounces ?? '',
    ]);
    return moved(reply, id);
  }

  /** A deferred message's next attempt moves; no event (its watchers heard of the deferral once). */
  async due(member: string, at: number): Promise<void> {
    await this.link.eval('outbox due', SCRIPTS.due, [this.key('m', member)], [at]);
  }

  /** Fields of a record, by name (missing ones undefined). */
  async fields(member: string, ...names: string[]): Promise<(string | undefined)[]> {
    const values = await this.link.run('outbox read', (c) => c.hmget(this.key('m', member), ...names));
    return values.map((v) => v ?? undefined);
  }

  async get(id: string, caller: string): Promise<MessageStatus | undefined> {
    const h = await this.link.run('outbox get', (c) => c.hgetall(this.key('m', digest(id))));
    return h.state === undefined || h.caller !== caller ? undefined : statusOf(h);
  }

  async eventsAfter(after: string, caller: string, limit: number): Promise<StatusEvent[]> {
    const start = after === '' || after === '0' ? '-' : `(${after}`;
    const entries = await this.link.run('outbox events', (c) => c.xrange(this.stream(caller), start, '+', 'COUNT', limit));
    return entries.map(([cursor, flat]) => {
      const m: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) m[flat[i] as string] = flat[i + 1] as string;
      return { cursor, status: statusOf({ ...m, due_at: m.next_attempt_at }), ...(m.connection !== undefined ? { connection: m.connection } : {}) };
    });
  }

  async latest(caller: string): Promise<string> {
    const last = await this.link.run('outbox latest', (c) => c.xrevrange(this.stream(caller), '+', '-', 'COUNT', 1));
    return last[0]?.[0] ?? '0';
  }

  async counts(): Promise<OutboxCounts> {
    const [raw, oldest, bytes] = await this.link.run('outbox counts', (c) =>
      Promise.all([c.hgetall(this.key('counts')), c.zrange(this.key('queued'), 0, 0, 'WITHSCORES'), c.get(this.key('bytes'))]),
    );
    const states = Object.fromEntries(MESSAGE_STATES.map((s) => [s, Math.max(0, Number(raw[s] ?? 0))])) as Record<MessageState, number>;
    return { states, oldestQueuedAt: oldest[1] === undefined ? undefined : Number(oldest[1]), bytes: Number(bytes ?? 0) };
  }

  /** Members whose expiry passed, at most `limit`. */
  expired(now: number, limit: number): Promise<string[]> {
    return this.link.run('outbox expired', (c) => c.zrangebyscore(this.key('live'), '-inf', now, 'LIMIT', 0, limit));
  }

  async forget(member: string): Promise<void> {
    await this.link.run('outbox forget', (c) => c.zrem(this.key('live'), member));
  }

  /** Members deferred for the relay's absence; each is taken out of that set. */
  absent(): Promise<string[]> {
    return this.link.run('outbox absent', (c) => c.smembers(this.key('absent')));
  }

  async present(member: string): Promise<void> {
    await this.link.run('outbox absent', (c) => c.srem(this.key('absent'), member));
  }

  async purge(olderThan: number): Promise<void> {
    // Statuses expire by themselves (PEXPIRE when final); the event streams are trimmed by age.
    const streams = await this.link.run('outbox streams', (c) => c.smembers(this.key('streams')));
    for (const stream of streams) await this.link.run('outbox trim', (c) => c.xtrim(stream, 'MINID', String(olderThan)));
  }

  async close(): Promise<void> {
    await this.subscriber?.quit().catch(() => this.subscriber?.disconnect());
  }
}
