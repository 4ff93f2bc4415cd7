-- Replace the slot's state wholesale from the record of truth.
-- ARGV: fence_token, capacity, booked, release_at_ms, status, hold_count, confirmed_count,
-- then hold_count triples (hold_id, account_id, expires_at_ms), then confirmed_count pairs
-- (hold_id, account_id), then pairs (unit_id, return_at_ms) to the end.
-- A rebuild passes the token of the fence it raised (fence.lua): the load happens only if
-- that fence still stands, so no step ran on the slot between its snapshot and this load,
-- and the fence comes down with it. Without a token (a lazy load), a fenced slot waits.
-- Returning units are also marked cancelled, so a repeated cancellation after a rebuild
-- cannot give the same unit back twice. `due` is the earliest expiry or return time loaded.
local token = ARGV[1]
if token == '' then
  if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
elseif redis.call('GET', FENCE) ~= token then
  return {'FENCE_LOST'}
end
redis.call('DEL', META, HOLD_EXPIRY, HOLD_OWNER, RETURNING, CONFIRMED, CANCELLED)
redis.call('HSET', META, 'capacity', ARGV[2], 'booked', ARGV[3],
  'release_at_ms', ARGV[4], 'status', ARGV[5])
local hold_count, confirmed_count = tonumber(ARGV[6]), tonumber(ARGV[7])
local due = NEVER
local i = 8
for _ = 1, hold_count do
  redis.call('ZADD', HOLD_EXPIRY, ARGV[i + 2], ARGV[i])
  redis.call('HSET', HOLD_OWNER, ARGV[i], ARGV[i + 1])
  if tonumber(ARGV[i + 2]) < tonumber(due) then due = ARGV[i + 2] end
  i = i + 3
end
for _ = 1, confirmed_count do
  redis.call('HSET', CONFIRMED, ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  redis.call('ZADD', RETURNING, ARGV[i + 1], ARGV[i])
  redis.call('SADD', CANCELLED, ARGV[i])
  if tonumber(ARGV[i + 1]) < tonumber(due) then due = ARGV[i + 1] end
  i = i + 2
end
redis.call('HSET', META, 'due', due)
if token ~= '' then redis.call('DEL', FENCE) end
announce()
return {'OK'}
