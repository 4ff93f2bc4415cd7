-- The floor's hold (bench/grant_floor_server.py) under hold_many.lua's KEYS and ARGV, for
-- `bench/hold_script_cost.py --variant bench/grant_floor_hold.lua`: per hold the idempotency
-- record (SET NX PX), one unit taken (HINCRBY against the slot's capacity, read once a slot a
-- call), the hold's expiry (ZADD). No marker, no owner, no sweep, no fence, no announcement,
-- no replayed answer: what Redis must do for any idempotent hold with a time limit.
local slots, holds, replay_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local per_hold = ARGV[4] == '1' and 2 or 1
local first = slots * 6
local capacity = {}
local replies = {}
for i = 1, holds do
  local a = 4 + (i - 1) * 7
  local n = tonumber(ARGV[a + 1])
  local base = (n - 1) * 6
  local meta, expiry = KEYS[base + 1], KEYS[base + 2]
  local hold_id, expires = ARGV[a + 2], ARGV[a + 5]
  local replay = KEYS[first + (i - 1) * per_hold + 1]
  if capacity[n] == nil then
    local m = redis.call('HMGET', meta, 'capacity', 'booked')
    capacity[n] = tonumber(m[1]) - tonumber(m[2])
  end
  if not redis.call('SET', replay, hold_id, 'PX', replay_ttl, 'NX') then
    replies[i] = {'REPLAYED', hold_id, expires}
  elseif redis.call('HINCRBY', meta, 'floor_taken', 1) > capacity[n] then
    redis.call('HINCRBY', meta, 'floor_taken', -1)
    redis.call('DEL', replay)
    replies[i] = {'REFUSED', 'SLOT_SOLD_OUT', '-1'}
  else
    redis.call('ZADD', expiry, expires, hold_id)
    replies[i] = {'GRANTED', hold_id, expires}
  end
end
return replies
