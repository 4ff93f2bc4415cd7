-- Turn one returning unit (given back by 退号, not yet public) into a hold for a waiting
-- patient (候补). The platform makes this offer, not the patient's click, so no account
-- marker is involved. A repeat of the same claim answers ALREADY; a unit that is no longer
-- returning (its return time passed and it went public, or another waiter got it) is refused.
-- ARGV: unit_id, hold_id, account_id, now_ms, expires_at_ms
local unit_id, hold_id, account_id, now, expires = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
if redis.call('EXISTS', META) == 0 then return {'MISSING'} end
purge(now)
local owner = redis.call('HGET', HOLD_OWNER, hold_id)
if owner then
  if owner ~= account_id then return {'REFUSED', 'HOLD_NOT_OWNED'} end
  return {'ALREADY', redis.call('ZSCORE', HOLD_EXPIRY, hold_id)}
end
local confirmed_by = redis.call('HGET', CONFIRMED, hold_id)
if confirmed_by then
  if confirmed_by ~= account_id then return {'REFUSED', 'HOLD_NOT_OWNED'} end
  return {'REFUSED', 'BOOKING_ALREADY_CONFIRMED'}
end
if redis.call('HGET', META, 'status') ~= 'open' then return {'REFUSED', 'SLOT_CLOSED'} end
if not redis.call('ZSCORE', RETURNING, unit_id) then return {'REFUSED', 'UNIT_NOT_RETURNING'} end
redis.call('ZREM', RETURNING, unit_id)
redis.call('ZADD', HOLD_EXPIRY, expires, hold_id)
redis.call('HSET', HOLD_OWNER, hold_id, account_id)
lower_due(expires)
return {'GRANTED', expires}
