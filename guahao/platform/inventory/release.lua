-- Give a held unit back now (释放). Expired, unknown or confirmed holds give back nothing.
-- ARGV: hold_id, account_id, now_ms
local hold_id, account_id, now = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
if redis.call('EXISTS', META) == 0 then return {'MISSING'} end
purge(now)
local owner = redis.call('HGET', HOLD_OWNER, hold_id)
if owner then
  if owner ~= account_id then return {'REFUSED', 'HOLD_NOT_OWNED'} end
  redis.call('ZREM', HOLD_EXPIRY, hold_id)
  redis.call('HDEL', HOLD_OWNER, hold_id)
  announce()
  return {'RELEASED'}
end
local confirmed_by = redis.call('HGET', CONFIRMED, hold_id)
if confirmed_by and confirmed_by ~= account_id then return {'REFUSED', 'HOLD_NOT_OWNED'} end
return {'NOTHING'}
