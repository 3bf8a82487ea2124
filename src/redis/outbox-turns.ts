// Callers' turns within a lane of the Redis outbox. BullMQ's open-source
// queue has no groups, but it orders a lane's jobs by priority (and by age
// within one): a job's priority is its turn, how many of its owner's
// messages of that lane were waiting when it was queued, counting itself.
// The 1st message of every owner goes before any owner's 2nd: a caller
// with 100,000 queued and a caller with one each get the next message in
// turn, as the SQLite outbox's claims give them.
//
// The counts live in one hash, shared by the replicas: a field per lane
// and owner, up at acceptance (in the step that counts its bytes,
// outbox-intake.ts), down once when the job is first claimed or removed
// unclaimed, gone at zero (the hash holds only owners with work).
// A count is a hint: one that drifts (a replica that died between the
// count and the job) only orders a lane a little less fairly, and the hash
// is cleared whenever the queues hold nothing, when every count is zero.
import type { Lane } from '../mail/lane.js';
import { Script, type RedisLink } from './client.js';

/** KEYS: the counts; ARGV: fields and how many of each left → nothing (a field goes at zero) */
const DONE = new Script(`
for i = 1, #ARGV, 2 do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], -tonumber(ARGV[i + 1])) <= 0 then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0
`);

/** KEYS: the counts, then each queue's lists and sets of jobs not yet taken: the counts go when those are all empty */
const CLEAR_IF_IDLE = new Script(`
for i = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if (t == 'list' and redis.call('LLEN', KEYS[i]) > 0) or (t == 'zset' and redis.call('ZCARD', KEYS[i]) > 0) then return 0 end
end
redis.call('DEL', KEYS[1])
return 0
`);

export class OutboxTurns {
  /** the hash of counts (the intake counts a message in, outbox-intake.ts) */
  readonly key: string;
  /** messages that left the waiting since the last write, by field: written together, once a turn of the event loop */
  private left = new Map<string, number>();

  constructor(private readonly link: RedisLink) {
    this.key = link.key('outbox', 'turns');
  }

  /** One message of `owner` in `lane` left the waiting (claimed the first time, or removed unclaimed). */
  done(lane: Lane, owner: string): void {
    if (this.left.size === 0) setImmediate(() => void this.flush());
    const f = turnField(lane, owner);
    this.left.set(f, (this.left.get(f) ?? 0) + 1);
  }

  /** Clears every count when no job waits in `waiting` (BullMQ's wait, prioritized, paused and delayed keys). */
  async clearIfIdle(waiting: readonly string[]): Promise<void> {
    await this.link.eval('outbox turns clear', CLEAR_IF_IDLE, [this.key, ...waiting], []);
  }

  private async flush(): Promise<void> {
    const left = this.left;
    this.left = new Map();
    // A hint: a count not written (Redis away) only orders a lane a little less fairly until the next clearing.
    await this.link.eval('outbox turns done', DONE, [this.key], [...left].flat()).catch(() => undefined);
  }
}

/** The field of `owner`'s count in `lane`. */
export function turnField(lane: Lane, owner: string): string {
  return `${lane}:${owner}`;
}
