-- Reserve one unit. KEYS[8] is this request's idempotency record.
-- ARGV: hold_id, account_id, now_ms, expires_at_ms, replay_ttl_ms
-- On one server (not a cluster) KEYS[9] is also the account's marker ({acct:<id>}:hold) and
-- ARGV[6], ARGV[7] the marker to write and its PX: the grant then claims the account's one
-- unfinished hold in this same script (as account_claim.lua would), so a grant costs one
-- call and an account that already holds elsewhere is refused before anything is granted.
-- A cluster cannot run a script over two hash tags; there the caller claims it afterwards.
-- Every redis.call costs Redis about a microsecond of its own beyond the work asked, and a
-- grant is the surge's hot path, so a grant makes twelve (bench/profiles/engine2-*): the
-- slot's facts tell whether it is loaded, the returning units are swept only when there are
-- some, and the owner's entry and the marker are written with NX, their checks in the same
-- call (undone in the rare refusal that follows them).
local hold_id, account_id, now, expires = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local MARKER = KEYS[9]
if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
-- load.lua writes every field, so a slot without a status is one Redis does not know
local m = redis.call('HMGET', META, 'capacity', 'booked', 'release_at_ms', 'status')
if not m[4] then return {'MISSING'} end

-- A repeated request gets its first answer back, whatever happened since.
local prior = redis.call('GET', KEYS[8])
if prior then
  local grant = cjson.decode(prior)
  if grant[1] ~= account_id then return {'REFUSED', 'IDEMPOTENCY_KEY_REUSED'} end
  return {'REPLAYED', grant[2], grant[3]}
end

purge_holds(now)
local returning = redis.call('ZCARD', RETURNING)
if returning > 0 then
  returning = returning - redis.call('ZREMRANGEBYSCORE', RETURNING, '-inf', now)
end
-- a hold id names one hold on this slot for good: live (HOLD_OWNER) or confirmed
if redis.call('HEXISTS', CONFIRMED, hold_id) == 1 then
  return {'REFUSED', 'VALIDATION_FAILED'}
end
if redis.call('HEXISTS', HOLD_OWNER, hold_id) == 1 then
  return {'REFUSED', 'VALIDATION_FAILED'}
end

-- A lottery session (摇号) takes requests, not holds, until its draw.
if m[4] == 'lottery' then return {'REFUSED', 'SESSION_IS_LOTTERY'} end
if m[4] ~= 'open' then return {'REFUSED', 'SLOT_CLOSED'} end
-- Refusals carry the earliest time the answer could change on its own (release time; the
-- first hold to run out or unit to return), so a worker can refuse repeats locally until then.
if tonumber(now) < tonumber(m[3]) then return {'REFUSED', 'SLOT_NOT_RELEASED', m[3]} end
local available = tonumber(m[1]) - tonumber(m[2]) - redis.call('ZCARD', HOLD_EXPIRY) - returning
if available <= 0 then
  local next_free = nil
  local first_hold = redis.call('ZRANGE', HOLD_EXPIRY, 0, 0, 'WITHSCORES')
  if first_hold[2] then next_free = tonumber(first_hold[2]) end
  local first_return = redis.call('ZRANGE', RETURNING, 0, 0, 'WITHSCORES')
  if first_return[2] and (next_free == nil or tonumber(first_return[2]) < next_free) then
    next_free = tonumber(first_return[2])
  end
  -- then the accounts holding or having booked a unit here: a repeat of theirs may be owed
  -- its first grant, so a worker remembering this answer still sends them to Redis
  local reply = {'REFUSED', 'SLOT_SOLD_OUT', tostring(next_free or -1)}
  for _, owner in ipairs(redis.call('HVALS', HOLD_OWNER)) do reply[#reply + 1] = owner end
  for _, owner in ipairs(redis.call('HVALS', CONFIRMED)) do reply[#reply + 1] = owner end
  return reply
end

-- The marker: written when the account has none (the common case, one call); otherwise a
-- marker naming a live hold elsewhere refuses, and one whose hold ran out by the caller's
-- clock is overwritten (as account_claim.lua).
if MARKER and not redis.call('SET', MARKER, ARGV[6], 'PX', ARGV[7], 'NX') then
  local held = cjson.decode(redis.call('GET', MARKER))
  if tonumber(held[3]) > tonumber(now) then
    if held[2] ~= hold_id then return {'REFUSED', 'HOLD_ALREADY_ACTIVE', held[1], held[2]} end
  else
    redis.call('SET', MARKER, ARGV[6], 'PX', ARGV[7])
  end
end

redis.call('ZADD', HOLD_EXPIRY, expires, hold_id)
redis.call('HSET', HOLD_OWNER, hold_id, account_id)
redis.call('SET', KEYS[8], cjson.encode({account_id, hold_id, expires}), 'PX', ARGV[5])
announce_take()
return {'GRANTED', hold_id, expires}
