// Callers' turns within a lane of the Redis outbox. BullMQ's open-source
// queue has no groups, but it orders a lane's jobs by priority (and by age
// within one): a job's priority is its turn, how many of its owner's
// messages of that lane were waiting when it was queued, counting itself.
// The 1st message of every owner goes before any owner's 2nd: a caller
// with 100,000 queued and a caller with one each get the next message in
// turn, as the SQLite outbox's claims give them.
//
// The counts live in one hash, shared by the replicas: a field per lane
// and owner, up at acceptance, down once when the job is first claimed or
// removed unclaimed, gone at zero (the hash holds only owners with work).
// A count is a hint: one that drifts (a replica that died between the
// count and the job) only orders a lane a little less fairly, and the hash
// is cleared whenever the queues hold nothing, when every count is zero.
import type { Lane } from '../mail/lane.js';
import { Script, type RedisLink } from './client.js';

/** KEYS: the counts, then fields; ARGV: the fields → each one's count after counting one more */
const TAKE = new Script(`
local turns = {}
for i, field in ipairs(ARGV) do turns[i] = redis.call('HINCRBY', KEYS[1], field, 1) end
return turns
`);

/** KEYS: the counts; ARGV: one field → nothing (the field goes at zero) */
const DONE = new Script(`
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`);

/** KEYS: the counts, then each queue's lists and sets of jobs not yet taken → 1 when they were all empty and the counts went */
const CLEAR_IF_IDLE = new Script(`
for i = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if (t == 'list' and redis.call('LLEN', KEYS[i]) > 0) or (t == 'zset' and redis.call('ZCARD', KEYS[i]) > 0) then return 0 end
end
redis.call('DEL', KEYS[1])
return 1
`);

export class OutboxTurns {
  private readonly key: string;

  constructor(private readonly link: RedisLink) {
    this.key = link.key('outbox', 'turns');
  }

  /** Counts one more waiting message for each (lane, owner); each one's turn, from 1. */
  async take(owners: readonly { readonly lane: Lane; readonly owner: string }[]): Promise<number[]> {
    if (owners.length === 0) return [];
    return (await this.link.eval('outbox turns', TAKE, [this.key], owners.map(field))) as number[];
  }

  /** One message of `owner` in `lane` left the waiting (claimed the first time, or removed unclaimed). */
  async done(lane: Lane, owner: string): Promise<void> {
    await this.link.eval('outbox turn done', DONE, [this.key], [field({ lane, owner })]);
  }

  /** Clears every count when no job waits in `waiting` (BullMQ's wait, prioritized, paused and delayed keys). */
  async clearIfIdle(waiting: readonly string[]): Promise<boolean> {
    return (await this.link.eval('outbox turns clear', CLEAR_IF_IDLE, [this.key, ...waiting], [])) === 1;
  }
}

function field({ lane, owner }: { readonly lane: Lane; readonly owner: string }): string {
  return `${lane}:${owner}`;
}
