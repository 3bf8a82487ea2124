// The Redis outbox's records as Lua, one script a step, each atomic: a
// message's status hash, its caller's event stream (the cursor a watcher
// resumes from is the stream's id), and the indexes that find what
// expires, what is queued and what waited for the relay. The lifecycle is
// not written here: the caller passes the moves the message machine allows
// for the event ("queued=sending,deferred=sending"), computed from the
// chart; the script applies the one that matches the stored state, or
// answers {0, state} when none does.
//
// KEYS (both scripts): 1 status hash, 2 the caller's event stream,
// 3 state counts, 4 live (by expiry), 5 queued (by acceptance),
// 6 deferred for the relay's absence, 7 the set of event streams,
// 8 bytes of stored text.

const FIELDS = `
local function event(stream, f, connection)
  local args = {'id', f.id, 'state', f.state, 'attempts', f.attempts, 'last_response', f.last_response, 'error_code', f.error_code,
    'accepted_at', f.accepted_at, 'updated_at', f.updated_at, 'next_attempt_at', f.due_at}
  if connection ~= '' then table.insert(args, 'connection'); table.insert(args, connection) end
  if f.bounces and f.bounces ~= '' then table.insert(args, 'bounces'); table.insert(args, f.bounces) end
  return redis.call('XADD', stream, '*', unpack(args))
end
local ended = {sent = true, failed = true, cancelled = true, bounced = true, complained = true}
`;

/** create(id, caller, at, dueAt, expiresAt, member, bytes, ownerBytesKey) → the event's cursor */
export const OUTBOX_CREATE = `${FIELDS}
local f = {id = ARGV[1], state = 'queued', attempts = '0', last_response = '', error_code = '', accepted_at = ARGV[3], updated_at = ARGV[3], due_at = ARGV[4]}
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'caller', ARGV[2], 'state', 'queued', 'attempts', 0, 'last_response', '', 'error_code', '',
  'accepted_at', ARGV[3], 'updated_at', ARGV[3], 'due_at', ARGV[4], 'expires_at', ARGV[5], 'bytes', ARGV[7], 'owner_bytes', ARGV[8])
redis.call('HINCRBY', KEYS[3], 'queued', 1)
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[6])
redis.call('SADD', KEYS[7], KEYS[2])
return event(KEYS[2], f, '')
`;

/**
 * sent(id, caller, acceptedAt, at, attempts, response, member, retentionMs,
 * bounceKeyName, recipients, trace): the status record of a SYNC message the relay
 * took (no job, no text, no event: its caller heard SENT), found by its
 * return path.
 */
export const OUTBOX_SENT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'caller', ARGV[2], 'state', 'sent', 'attempts', ARGV[5], 'last_response', ARGV[6], 'error_code', '',
  'accepted_at', ARGV[3], 'updated_at', ARGV[4], 'due_at', 0, 'expires_at', ARGV[4], 'bytes', 0, 'recipients', ARGV[10])
if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 'trace', ARGV[11]) end
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('SET', ARGV[9], ARGV[7], 'PX', ARGV[8])
redis.call('HINCRBY', KEYS[3], 'sent', 1)
redis.call('SADD', KEYS[7], KEYS[2])
return 1
`;

/**
 * move(moves, at, attempted, setResponse, response, setCode, code, dueAt,
 * connection, retentionMs, member, absent, bounces, checkRead, readBounces)
 * → {1, cursor, state, attempts, last_response, error_code, accepted_at,
 * updated_at, due_at, bounces} | {0, state} | {2, state} (checkRead '1' and
 * the stored bounces are no longer readBounces: another report came
 * between) | nil (no such message). dueAt '' keeps the stored one, bounces
 * '' the stored ones. A move from an ended state to one (a delivery report)
 * changes no count of bytes.
 */
export const OUTBOX_MOVE = `${FIELDS}
local s = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'last_response', 'error_code', 'accepted_at', 'due_at', 'id', 'bytes', 'owner_bytes', 'bounces')
if not s[1] then return nil end
if ARGV[14] == '1' and (s[10] or '') ~= ARGV[15] then return {2, s[1]} end
local to = nil
for pair in string.gmatch(ARGV[1], '[^,]+') do
  local from, target = string.match(pair, '([^=]+)=([^=]+)')
  if from == s[1] then to = target end
end
if not to then return {0, s[1]} end
local final = ended[to] and not ended[s[1]]
local f = {id = s[7], state = to, attempts = tostring(tonumber(s[2]) + tonumber(ARGV[3])), last_response = s[3], error_code = s[4],
  accepted_at = s[5], updated_at = ARGV[2], due_at = '0', bounces = s[10] or ''}
if ARGV[13] ~= '' then f.bounces = ARGV[13]; redis.call('HSET', KEYS[1], 'bounces', ARGV[13]) end
if ARGV[4] == '1' then f.last_response = ARGV[5] end
if ARGV[6] == '1' then f.error_code = ARGV[7] end
if to == 'queued' or to == 'deferred' then
  if ARGV[8] ~= '' then f.due_at = ARGV[8] else f.due_at = s[6] end
end
redis.call('HSET', KEYS[1], 'state', to, 'attempts', f.attempts, 'last_response', f.last_response, 'error_code', f.error_code,
  'updated_at', ARGV[2], 'due_at', f.due_at)
redis.call('HINCRBY', KEYS[3], s[1], -1)
redis.call('HINCRBY', KEYS[3], to, 1)
if final then
  redis.call('ZREM', KEYS[4], ARGV[11])
  redis.call('DECRBY', KEYS[8], tonumber(s[8]) or 0)
  -- the owner's share (OUTBOX_MAX_BYTES_PER_CALLER): a key named by the record, as the replica that took it in wrote it
  if s[9] then redis.call('DECRBY', s[9], tonumber(s[8]) or 0) end
end
if ended[to] then redis.call('PEXPIRE', KEYS[1], ARGV[10]) end
if to == 'queued' then redis.call('ZADD', KEYS[5], s[5], ARGV[11]) else redis.call('ZREM', KEYS[5], ARGV[11]) end
if ARGV[12] == '1' then redis.call('SADD', KEYS[6], ARGV[11]) else redis.call('SREM', KEYS[6], ARGV[11]) end
local cursor = event(KEYS[2], f, ARGV[9])
return {1, cursor, f.state, f.attempts, f.last_response, f.error_code, f.accepted_at, f.updated_at, f.due_at, f.bounces}
`;

/** due(dueAt): a deferred message's next attempt moves (the relay is still away, or back); no event: its watchers heard of the deferral once. */
export const OUTBOX_DUE = `
if redis.call('HGET', KEYS[1], 'state') ~= 'deferred' then return 0 end
redis.call('HSET', KEYS[1], 'due_at', ARGV[1])
return 1
`;
