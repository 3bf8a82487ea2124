// What the Redis outbox checks before it takes a message in: its
// idempotency key (one message per key, whichever replica), and its bytes
// against the owner's share and the whole (OUTBOX_MAX_BYTES[_PER_CALLER]),
// counted in one step with its turn in its lane.
import type { Acceptance, NewMessage } from '../outbox/store.js';
import type { Lane } from '../mail/lane.js';
import { Script, type RedisLink } from './client.js';
import { turnField, type OutboxTurns } from './outbox-turns.js';
import type { OutboxStatuses } from './outbox-status.js';
import type { OutboxSettings } from '../outbox/settings.js';

/**
 * KEYS: the owner's bytes, everyone's, the counts of turns; ARGV: bytes, the owner's share, the whole, the turn's field,
 * how long the counts outlive the last message counted (no message waits longer) →
 * {0, its turn}, or {1, the bytes already counted, 1 when the owner's share is what is full} (nothing counted)
 */
const RESERVE = new Script(`
local bytes = tonumber(ARGV[1])
local mine = tonumber(redis.call('GET', KEYS[1]) or '0')
if mine + bytes > tonumber(ARGV[2]) then return {1, mine, 1} end
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
if total + bytes > tonumber(ARGV[3]) then return {1, total, 0} end
redis.call('INCRBY', KEYS[1], bytes)
redis.call('INCRBY', KEYS[2], bytes)
local turn = redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return {0, turn, 0}
`);

export class OutboxIntake {
  constructor(
    private readonly link: RedisLink,
    private readonly statuses: OutboxStatuses,
    private readonly turns: OutboxTurns,
    private readonly options: Pick<OutboxSettings, 'maxBytes' | 'maxBytesPerCaller' | 'maxAgeMs' | 'retentionMs'>,
  ) {}

  /**
   * Counts `bytes` against the owner's share and the whole, and the message
   * in its owner's turns (outbox-turns.ts): its turn, or the refusal
   * (nothing counted) when either share is full.
   */
  async reserve(owner: string, lane: Lane, bytes: number): Promise<{ turn: number } | Acceptance> {
    const keys = [this.statuses.ownerBytes(owner), this.statuses.key('bytes'), this.turns.key];
    const [full, n, mine] = (await this.link.eval('outbox reserve', RESERVE, keys, [bytes, this.options.maxBytesPerCaller, this.options.maxBytes, turnField(lane, owner), this.options.maxAgeMs])) as [number, number, number];
    return full === 0 ? { turn: n } : { kind: 'full', bytes: n, mine: mine === 1 };
  }

  /** An idempotency key's claim: undefined when the message is new, else the answer for the key's first message. */
  async admit(m: NewMessage): Promise<Acceptance | undefined> {
    if (m.idempotency === undefined) return undefined;
    const key = this.statuses.key('idem', m.idempotency.key);
    const claimed = await this.link.run('outbox idempotency', (c) => c.set(key, JSON.stringify({ id: m.id, fingerprint: m.idempotency?.fingerprint }), 'PX', this.options.maxAgeMs + this.options.retentionMs, 'NX'));
    if (claimed !== null) return undefined;
    const before = JSON.parse((await this.link.run('outbox idempotency', (c) => c.get(key))) ?? '{}') as { id?: string; fingerprint?: string };
    const status = before.id === undefined ? undefined : await this.statuses.get(before.id, m.caller);
    return before.fingerprint === m.idempotency.fingerprint && status !== undefined ? { kind: 'existing', status } : { kind: 'conflict' };
  }
}
