// Idempotency keys shared by replicas, as Lua, one script a step. One hash a
// key, KEYS[1] = <prefix>idem:<digest of caller and key>: fp (the request's
// fingerprint), state (pending | done), owner (the replica and send that
// claimed it), created (ms), result (JSON of the first call's result).

/**
 * claim(fp, owner, now, pendingTtl) → {'claimed'} | {'mismatch'} |
 * {'done', result} | {'pending'}. A claim lives pendingTtl ms unless
 * finished: a replica that dies with a send under way frees its keys.
 */
export const IDEM_CLAIM = `
local key = KEYS[1]
local f = redis.call('HMGET', key, 'fp', 'state', 'result')
if not f[1] then
  redis.call('HSET', key, 'fp', ARGV[1], 'state', 'pending', 'owner', ARGV[2], 'created', ARGV[3])
  redis.call('PEXPIRE', key, ARGV[4])
  return {'claimed'}
end
if f[1] ~= ARGV[1] then return {'mismatch'} end
if f[2] == 'done' then return {'done', f[3]} end
return {'pending'}
`;

/** finish(owner, result, window) → 1, or 0 when the claim is no longer this send's: the result is kept for the window from the first call. */
export const IDEM_FINISH = `
local key = KEYS[1]
local f = redis.call('HMGET', key, 'owner', 'created')
if f[1] ~= ARGV[1] then return 0 end
redis.call('HSET', key, 'state', 'done', 'result', ARGV[2])
redis.call('PEXPIREAT', key, tonumber(f[2]) + tonumber(ARGV[3]))
return 1
`;

/** forget(owner) → 1, or 0 when the claim is no longer this send's: a failed send is forgotten, so a retry really retries. */
export const IDEM_FORGET = `
local key = KEYS[1]
if redis.call('HGET', key, 'owner') ~= ARGV[1] then return 0 end
redis.call('DEL', key)
return 1
`;
