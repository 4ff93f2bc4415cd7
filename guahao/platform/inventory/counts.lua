-- A snapshot that writes nothing: it counts live holds and returning units by their times
-- instead of purging, so it is cheap and safe to pipeline across many slots.
-- ARGV: now_ms. Returns nil for a slot Redis does not know. The eighth value is the first
-- instant after now at which a live hold runs out or a returning unit returns (-1: none), when
-- the counts change with no script run and so with nothing announced.
if redis.call('EXISTS', META) == 0 then return false end
local m = redis.call('HMGET', META, 'capacity', 'booked', 'release_at_ms', 'status')
local capacity, booked = tonumber(m[1]), tonumber(m[2])
local held = redis.call('ZCOUNT', HOLD_EXPIRY, '(' .. ARGV[1], '+inf')
local returning = redis.call('ZCOUNT', RETURNING, '(' .. ARGV[1], '+inf')
local next_change = -1
for _, key in ipairs({HOLD_EXPIRY, RETURNING}) do
  local first = redis.call('ZRANGEBYSCORE', key, '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if first[2] and (next_change < 0 or tonumber(first[2]) < next_change) then
    next_change = tonumber(first[2])
  end
end
return {capacity, booked, held, returning, capacity - booked - held - returning, m[3], m[4],
  next_change}
