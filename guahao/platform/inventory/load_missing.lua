-- Load many slots Redis does not know yet, in one call: load_if_missing (load.lua with
-- EXISTS META) for each slot of the batch, without the holds, bookings and returning units a
-- rebuild carries (a slot just published has none).
-- Unlike load.lua it announces nothing on the give-back channel: no worker can remember a
-- refusal of a slot Redis never knew, and the availability answers bound a session newly
-- published by their age, not by messages (availability_answers.py); a message a slot would
-- cost every worker process 50 000 messages for one large schedule.
-- KEYS: each slot's family of 7 (meta, hold_expiry, hold_owner, returning, confirmed,
-- cancelled, fence) one slot after another; on Redis Cluster the caller groups slots whose
-- families share a hash slot, on one server any slots.
-- ARGV: capacity, booked, release_at_ms, status for each slot, in the same order. A new slot
-- has nothing to run out: its `due` is slot_prelude.lua's NEVER.
-- Reply: one letter a slot: L loaded, P present (left untouched), F fenced by a rebuild
-- (nothing done; the caller loads it alone, waiting for the fence).
local NEVER = '9007199254740991'  -- slot_prelude.lua's: `due` with nothing to run out
local reply = {}
for n = 0, #KEYS / 7 - 1 do
  local k, a = n * 7, n * 4
  local meta = KEYS[k + 1]
  if redis.call('EXISTS', KEYS[k + 7]) == 1 then
    reply[n + 1] = 'F'
  elseif redis.call('EXISTS', meta) == 1 then
    reply[n + 1] = 'P'
  else
    redis.call('DEL', KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6])
    redis.call('HSET', meta, 'capacity', ARGV[a + 1], 'booked', ARGV[a + 2],
      'release_at_ms', ARGV[a + 3], 'status', ARGV[a + 4], 'due', NEVER)
    reply[n + 1] = 'L'
  end
end
return reply
