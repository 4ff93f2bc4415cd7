-- Replace the slot's state wholesale from the record of truth.
-- ARGV: capacity, booked, release_at_ms, status, hold_count, then hold_count triples
-- (hold_id, account_id, expires_at_ms), then pairs (unit_id, return_at_ms) to the end.
-- Returning units are also marked cancelled, so a repeated cancellation after a rebuild
-- cannot give the same unit back twice.
redis.call('DEL', META, HOLD_EXPIRY, HOLD_OWNER, RETURNING, CONFIRMED, CANCELLED)
redis.call('HSET', META, 'capacity', ARGV[1], 'booked', ARGV[2],
  'release_at_ms', ARGV[3], 'status', ARGV[4])
local hold_count = tonumber(ARGV[5])
local i = 6
for _ = 1, hold_count do
  redis.call('ZADD', HOLD_EXPIRY, ARGV[i + 2], ARGV[i])
  redis.call('HSET', HOLD_OWNER, ARGV[i], ARGV[i + 1])
  i = i + 3
end
while i < #ARGV do
  redis.call('ZADD', RETURNING, ARGV[i + 1], ARGV[i])
  redis.call('SADD', CANCELLED, ARGV[i])
  i = i + 2
end
return {'OK'}
