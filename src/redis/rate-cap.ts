// A rate cap whose buckets live in Redis, so that every replica spends the
// same allowance: a key's sends per hour are the key's, whichever replica a
// call reaches. A token bucket per key in one hash, refilled by Redis's own
// clock (replicas' clocks differ) and expiring once it would be full again.
// Redis unreachable: the replica's own bucket decides meanwhile (a cap errs
// towards letting a request through, see rpc/rate-cap.ts).
import { createHash } from 'node:crypto';
import { MailroomError } from '../errors.js';
import { RateCap } from '../lib/rate-cap.js';
import { Script, type RedisLink } from './client.js';

/** take(limit, windowMs) → 0, or ms until a token is free */
const TAKE = new Script(`
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = tonumber(s[1]) or limit
local last = tonumber(s[2]) or now
tokens = math.min(limit, tokens + math.max(0, now - last) * limit / window)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * window / limit) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'last', now)
redis.call('PEXPIRE', KEYS[1], window)
return wait
`);

export class RedisRateCap {
  private readonly local: RateCap;

  constructor(
    private readonly link: RedisLink,
    private readonly name: string,
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly what: string,
  ) {
    this.local = new RateCap(limit, windowMs, what);
  }

  /** Resolves when `key` may go on; rejects ERATELIMIT (with retry-after) when it is over the cap. */
  async take(key: string): Promise<void> {
    if (this.limit === 0) return;
    let wait: number;
    try {
      const id = createHash('sha256').update(key).digest('base64url');
      wait = Number(await this.link.eval('rate cap', TAKE, [this.link.key('cap', this.name, id)], [this.limit, this.windowMs]));
    } catch {
      this.local.take(key);
      return;
    }
    if (wait > 0) throw new MailroomError('ERATELIMIT', `too many ${this.what}`, { retryAfterSeconds: Math.max(1, Math.ceil(wait / 1000)) });
  }
}
