-- Reserve one unit for a lottery winner (摇号) while the slot is closed to ordinary holds
-- (status 'lottery'). No account marker: the draw, not the patient, makes the offer.
-- A repeat of the same grant answers ALREADY. ARGV: hold_id, account_id, now_ms, expires_at_ms
local hold_id, account_id, now, expires = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
if redis.call('EXISTS', META) == 0 then return {'MISSING'} end
purge(now)
local owner = redis.call('HGET', HOLD_OWNER, hold_id)
if owner then
  if owner ~= account_id then return {'REFUSED', 'HOLD_NOT_OWNED'} end
  return {'ALREADY', redis.call('ZSCORE', HOLD_EXPIRY, hold_id)}
end
if redis.call('HEXISTS', CONFIRMED, hold_id) == 1 then
  return {'REFUSED', 'BOOKING_ALREADY_CONFIRMED'}
end
local t = tally()
if t[7] ~= 'lottery' then return {'REFUSED', 'SESSION_NOT_LOTTERY'} end
if t[5] <= 0 then return {'REFUSED', 'SLOT_SOLD_OUT', '-1'} end
redis.call('ZADD', HOLD_EXPIRY, expires, hold_id)
redis.call('HSET', HOLD_OWNER, hold_id, account_id)
lower_due(expires)
announce_take()
return {'GRANTED', expires}
