-- Open, stop (停诊) or close a slot to new holds; live holds and bookings are untouched.
-- ARGV: status
if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
if redis.call('EXISTS', META) == 0 then return {'MISSING'} end
redis.call('HSET', META, 'status', ARGV[1])
announce()
return {'OK'}
