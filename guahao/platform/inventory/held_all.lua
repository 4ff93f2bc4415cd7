-- Whether each hold of a group is still in the pool, asked by the group commit of granted
-- holds once their records are written (one call for the whole commit on one server; on Redis
-- Cluster one call per slot, every key under its tag), and by the hold path about one hold
-- (RedisInventory.holds, which waits out a FENCED answer and refuses a MISSING slot): once a
-- hold's record is written, whether a Redis lost and reloaded meanwhile (from a SQL read that
-- could not see the record yet) still knows the hold.
-- The holds come grouped by slot: a slot's fence is read once for all its holds (a release's
-- grants crowd onto a few slots), then each hold's own expiry. The meta is read only for a
-- slot with a hold not found (MISSING or GONE): a hold found in the slot's expiry set or its
-- confirmed hash is in a loaded slot, since the meta is deleted only by load.lua, which
-- writes it again in the same call, and a lost Redis loses the slot's keys together (one hash
-- tag). So a commit's usual answer, every hold held, costs two reads a slot, not three.
-- Writes nothing. A confirmed hold counts as held.
-- KEYS: for each slot s, its meta, hold_expiry, confirmed and fence keys (KEYS[4s-3 .. 4s]).
-- ARGV: for each slot in the same order, the number n of its holds, then n pairs of a hold id
-- and the caller's now_ms. Returns one word per hold, in ARGV's order: HELD, GONE, FENCED or
-- MISSING.
local answers, answered = {}, 0
local at = 1
for s = 1, #KEYS / 4 do
  local meta, expiry, confirmed = KEYS[4 * s - 3], KEYS[4 * s - 2], KEYS[4 * s - 1]
  local holds = tonumber(ARGV[at])
  local fenced = redis.call('EXISTS', KEYS[4 * s]) == 1
  local lost = nil -- the answer for a hold not found: GONE, or MISSING with no meta
  for i = 1, holds do
    local answer = 'FENCED'
    if not fenced then
      local hold_id = ARGV[at + 2 * i - 1]
      local expires = redis.call('ZSCORE', expiry, hold_id)
      if (expires and tonumber(expires) > tonumber(ARGV[at + 2 * i]))
          or redis.call('HEXISTS', confirmed, hold_id) == 1 then
        answer = 'HELD'
      else
        if lost == nil then
          lost = redis.call('EXISTS', meta) == 1 and 'GONE' or 'MISSING'
        end
        answer = lost
      end
    end
    answered = answered + 1
    answers[answered] = answer
  end
  at = at + 1 + 2 * holds
end
return answers
