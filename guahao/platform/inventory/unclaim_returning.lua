-- Undo a claim_returning whose record could not be written: the unit goes back on its way to
-- the public pool at its original return time, never straight to the public.
-- ARGV: unit_id, hold_id, account_id, now_ms, return_at_ms
local unit_id, hold_id, account_id, now, return_at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
if redis.call('EXISTS', META) == 0 then return {'MISSING'} end
if redis.call('HGET', HOLD_OWNER, hold_id) ~= account_id then return {'NOTHING'} end
redis.call('ZREM', HOLD_EXPIRY, hold_id)
redis.call('HDEL', HOLD_OWNER, hold_id)
if tonumber(return_at) > tonumber(now) then
  redis.call('ZADD', RETURNING, return_at, unit_id)
  lower_due(return_at)
end
announce()
return {'UNDONE'}
