// Idempotency keys shared by replicas, as Lua, one script a step. One hash a
// key, KEYS[1] = <prefix>idem:<digest of caller and key>: fp (the request's
// fingerprint), state (pending | done), owner (the replica and send that
// claimed it), created (ms), result (JSON of the first call's result).
// KEYS[2], KEYS[3]: the live keys of the caller and of everyone, for
// IDEMPOTENCY_MAX_BYTES[_PER_CALLER], each gone when its last key leaves.

/**
 * claim(fp, owner, now, pendingTtl, maxKeys, maxKeysOfOwner) → {'claimed'} |
 * {'mismatch'} | {'done', result} | {'pending'} | {'full', the time the
 * oldest counted key leaves, 'all' | 'mine'}. A claim lives pendingTtl ms
 * unless finished: a replica that dies with a send under way frees its keys.
 * KEYS[2] and KEYS[3] count the live keys of the owner and of everyone (a
 * sorted set each, a key by when it leaves): a new key that would take
 * either past its bound is refused, and nothing is written.
 */
export const IDEM_CLAIM = `
local key = KEYS[1]
local f = redis.call('HMGET', key, 'fp', 'state', 'result')
if f[1] then
  if f[1] ~= ARGV[1] then return {'mismatch'} end
  if f[2] == 'done' then return {'done', f[3]} end
  return {'pending'}
end
local now = tonumber(ARGV[3])
for i = 2, 3 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5]) then return {'full', redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2], 'all'} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return {'full', redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2], 'mine'} end
redis.call('HSET', key, 'fp', ARGV[1], 'state', 'pending', 'owner', ARGV[2], 'created', ARGV[3])
redis.call('PEXPIRE', key, ARGV[4])
for i = 2, 3 do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[4]), key)
  redis.call('PEXPIREAT', KEYS[i], redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')[2])
end
return {'claimed'}
`;

/** finish(owner, result, window) → 1, or 0 when the claim is no longer this send's: the result is kept (and counted) for the window from the first call. */
export const IDEM_FINISH = `
local key = KEYS[1]
local f = redis.call('HMGET', key, 'owner', 'created')
if f[1] ~= ARGV[1] then return 0 end
local leaves = tonumber(f[2]) + tonumber(ARGV[3])
redis.call('HSET', key, 'state', 'done', 'result', ARGV[2])
redis.call('PEXPIREAT', key, leaves)
for i = 2, 3 do
  redis.call('ZADD', KEYS[i], 'XX', leaves, key)
  redis.call('PEXPIREAT', KEYS[i], redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')[2])
end
return 1
`;

/** forget(owner) → 1, or 0 when the claim is no longer this send's: a failed send is forgotten (and no longer counted), so a retry really retries. */
export const IDEM_FORGET = `
local key = KEYS[1]
if redis.call('HGET', key, 'owner') ~= ARGV[1] then return 0 end
redis.call('DEL', key)
for i = 2, 3 do redis.call('ZREM', KEYS[i], key) end
return 1
`;
