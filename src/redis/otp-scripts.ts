// The OTP store's steps as Lua, one script a step, each atomic in Redis: of
// any number of replicas checking the same code at once, one wins.
//
// One hash per address, KEYS[1] = <prefix>otp:<address>:
//   h     HMAC of the live code (hex), exp its expiry (epoch ms),
//   left  wrong checks it has left,
//   sends the send times of the last hour (ms, comma-separated, oldest first),
//   pend  when the send under way was claimed (ms); stale after ARGV pendingTtl.
// Every write sets the key's expiry to the latest moment any field still
// matters (the code's expiry, an hour after the newest send, the claim's
// end), so Redis forgets the address by itself and no sweep is needed.
// Times come from the replica (ARGV), like the in-memory store's `now`.

const HOUR_MS = 3_600_000;

/** Shared Lua: the sends of the last hour, and the key's expiry from what it holds. */
const PRELUDE = `
local HOUR = ${HOUR_MS}
local function recent(csv, now)
  local out = {}
  if csv then
    for t in string.gmatch(csv, '[^,]+') do
      local n = tonumber(t)
      if n > now - HOUR then out[#out + 1] = n end
    end
  end
  return out
end
local function expire(key, now, pendTtl)
  local f = redis.call('HMGET', key, 'exp', 'sends', 'pend')
  local last = 0
  if f[1] then last = tonumber(f[1]) end
  if f[2] then
    for t in string.gmatch(f[2], '[^,]+') do last = math.max(last, tonumber(t) + HOUR) end
  end
  if f[3] then last = math.max(last, tonumber(f[3]) + pendTtl) end
  if last <= now then redis.call('DEL', key) else redis.call('PEXPIREAT', key, last) end
end
`;

/**
 * reserve(now, cooldown, maxPerHour, lifespan, pendTtl) →
 * {1} | {0, reason, retryAfterMs}: refuses while a send is under way, while
 * the live code is younger than the cooldown, or when the hour's sends are
 * spent; otherwise counts the send and marks it under way.
 */
export const RESERVE = `${PRELUDE}
local key = KEYS[1]
local now, cooldown, maxPerHour, lifespan, pendTtl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local f = redis.call('HMGET', key, 'h', 'exp', 'sends', 'pend')
if f[4] and tonumber(f[4]) + pendTtl > now then return {0, 'pending', math.max(1000, cooldown)} end
if f[1] and tonumber(f[2]) > now then
  local since = tonumber(f[2]) - lifespan
  if now - since < cooldown then return {0, 'cooldown', since + cooldown - now} end
end
local sends = recent(f[3], now)
if #sends >= maxPerHour then return {0, 'hourly', sends[1] + HOUR - now} end
sends[#sends + 1] = now
redis.call('HSET', key, 'sends', table.concat(sends, ','), 'pend', now)
expire(key, now, pendTtl)
return {1}
`;

/** commit(hashHex, now, lifespan, maxAttempts, pendTtl): the mail went out; this code replaces any live one. */
export const COMMIT = `${PRELUDE}
local key = KEYS[1]
local now, lifespan, attempts, pendTtl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('HSET', key, 'h', ARGV[1], 'exp', now + lifespan, 'left', attempts)
redis.call('HDEL', key, 'pend')
expire(key, now, pendTtl)
return 1
`;

/** release(refund, now, pendTtl): the mail failed; the claim ends, and with refund its send leaves the hour's count. */
export const RELEASE = `${PRELUDE}
local key = KEYS[1]
local refund, now, pendTtl = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('HEXISTS', key, 'pend') == 0 then return 0 end
redis.call('HDEL', key, 'pend')
if refund then
  -- Sends of one address never overlap: the claim is the newest send.
  local sends = recent(redis.call('HGET', key, 'sends'), now)
  table.remove(sends)
  if #sends == 0 then redis.call('HDEL', key, 'sends') else redis.call('HSET', key, 'sends', table.concat(sends, ',')) end
end
expire(key, now, pendTtl)
return 1
`;

/**
 * check(candidateHex, dummyHex, now, pendTtl) → -1 (accepted and consumed),
 * or the wrong checks the live code has left (0: none live, or it just died).
 * The comparison is constant-time, against a dummy when no code is live, so
 * every outcome takes the same path.
 */
export const CHECK = `${PRELUDE}
local key = KEYS[1]
local candidate, now, pendTtl = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local f = redis.call('HMGET', key, 'h', 'exp', 'left')
local live = f[1] ~= false and tonumber(f[2]) > now
local stored = ARGV[2]
if live then stored = f[1] end
local diff = 0
if #stored ~= #candidate then diff = 1 end
for i = 1, math.min(#stored, #candidate) do
  diff = bit.bor(diff, bit.bxor(string.byte(stored, i), string.byte(candidate, i)))
end
local function drop()
  redis.call('HDEL', key, 'h', 'exp', 'left')
  expire(key, now, pendTtl)
end
if not live then
  if f[1] then drop() end
  return 0
end
if diff == 0 then
  drop()
  return -1
end
local left = tonumber(f[3]) - 1
if left <= 0 then
  drop()
  return 0
end
redis.call('HSET', key, 'left', left)
return left
`;
