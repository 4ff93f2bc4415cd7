-- Keep a live hold until a later instant; never shortens it, so a late or reordered
-- extension cannot cut a payment short. ARGV: hold_id, account_id, now_ms, until_ms
local hold_id, account_id, now, until_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
if redis.call('EXISTS', META) == 0 then return {'MISSING'} end
purge(now)
local owner = redis.call('HGET', HOLD_OWNER, hold_id)
if owner then
  if owner ~= account_id then return {'REFUSED', 'HOLD_NOT_OWNED'} end
  local current = redis.call('ZSCORE', HOLD_EXPIRY, hold_id)
  if tonumber(until_ms) > tonumber(current) then
    redis.call('ZADD', HOLD_EXPIRY, until_ms, hold_id)
    return {'EXTENDED', until_ms}
  end
  return {'EXTENDED', current}
end
local confirmed_by = redis.call('HGET', CONFIRMED, hold_id)
if confirmed_by then
  if confirmed_by ~= account_id then return {'REFUSED', 'HOLD_NOT_OWNED'} end
  return {'REFUSED', 'BOOKING_ALREADY_CONFIRMED'}
end
return {'REFUSED', 'HOLD_EXPIRED'}
