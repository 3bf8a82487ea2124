// What the Redis outbox checks before it takes a message in: its
// idempotency key (one message per key, whichever replica), and its bytes
// against the owner's share and the whole (OUTBOX_MAX_BYTES[_PER_CALLER]).
import type { Acceptance, NewMessage } from '../outbox/store.js';
import type { RedisLink } from './client.js';
import type { OutboxStatuses } from './outbox-status.js';
import type { OutboxSettings } from '../outbox/settings.js';

export class OutboxIntake {
  constructor(
    private readonly link: RedisLink,
    private readonly statuses: OutboxStatuses,
    private readonly options: Pick<OutboxSettings, 'maxBytes' | 'maxBytesPerCaller' | 'maxAgeMs' | 'retentionMs'>,
  ) {}

  /** Counts `bytes` against the owner's share and the whole; the refusal (nothing counted) when either is full. */
  async reserveBytes(owner: string, bytes: number): Promise<Acceptance | undefined> {
    const ownerKey = this.statuses.ownerBytes(owner);
    const mine = await this.link.run('outbox bytes', (c) => c.incrby(ownerKey, bytes));
    if (mine > this.options.maxBytesPerCaller) {
      await this.link.run('outbox bytes', (c) => c.decrby(ownerKey, bytes));
      return { kind: 'full', bytes: mine - bytes, mine: true };
    }
    const total = await this.link.run('outbox bytes', (c) => c.incrby(this.statuses.key('bytes'), bytes));
    if (total <= this.options.maxBytes) return undefined;
    await this.link.run('outbox bytes', (c) => c.multi().decrby(this.statuses.key('bytes'), bytes).decrby(ownerKey, bytes).exec());
    return { kind: 'full', bytes: total - bytes, mine: false };
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
