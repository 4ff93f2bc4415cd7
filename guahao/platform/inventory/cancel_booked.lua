-- Un-book one unit (退号, 停诊). It stays out of the public pool until return_at_ms so that a
-- cancel-then-rebook hand-over to a buyer cannot be timed. ARGV: unit_id, now_ms, return_at_ms
local unit_id, now, return_at = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
if redis.call('EXISTS', META) == 0 then return {'MISSING'} end
if redis.call('SISMEMBER', CANCELLED, unit_id) == 1 then return {'ALREADY'} end
purge(now)
if tonumber(redis.call('HGET', META, 'booked')) <= 0 then
  return {'REFUSED', 'BOOKING_STATE_INVALID'}
end
redis.call('HINCRBY', META, 'booked', -1)
if tonumber(return_at) > tonumber(now) then
  redis.call('ZADD', RETURNING, return_at, unit_id)
  lower_due(return_at)
end
redis.call('SADD', CANCELLED, unit_id)
announce()
return {'CANCELLED'}
