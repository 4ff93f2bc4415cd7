-- Change the online quota (加号, cut-off). Units already taken or on their way back cannot be
-- taken away, so the floor is booked + held + returning. ARGV: capacity, now_ms
local capacity, now = ARGV[1], ARGV[2]
if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
if redis.call('EXISTS', META) == 0 then return {'MISSING'} end
purge(now)
local t = tally()
local floor = t[2] + t[3] + t[4]
if tonumber(capacity) < floor then return {'REFUSED', 'SLOT_SOLD_OUT', floor} end
redis.call('HSET', META, 'capacity', capacity)
announce()
return {'OK', tally()}
