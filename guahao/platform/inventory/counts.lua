-- A snapshot that writes nothing: it counts live holds and returning units by their times
-- instead of purging, so it is cheap and safe to pipeline across many slots.
-- ARGV: now_ms. Returns nil for a slot Redis does not know.
if redis.call('EXISTS', META) == 0 then return false end
local m = redis.call('HMGET', META, 'capacity', 'booked', 'release_at_ms', 'status')
local capacity, booked = tonumber(m[1]), tonumber(m[2])
local held = redis.call('ZCOUNT', HOLD_EXPIRY, '(' .. ARGV[1], '+inf')
local returning = redis.call('ZCOUNT', RETURNING, '(' .. ARGV[1], '+inf')
return {capacity, booked, held, returning, capacity - booked - held - returning, m[3], m[4]}
