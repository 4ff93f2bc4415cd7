-- Whether each hold of a group is still in the pool, asked by the group commit of granted
-- holds once their records are written (one call for the whole commit on one server; on Redis
-- Cluster one call per slot, every key under its tag), and by the hold path about one hold
-- (RedisInventory.holds, which waits out a FENCED answer and refuses a MISSING slot): once a
-- hold's record is written, whether a Redis lost and reloaded meanwhile (from a SQL read that
-- could not see the record yet) still knows the hold.
-- Writes nothing. A confirmed hold counts as held.
-- KEYS: for each hold i, its slot's meta, hold_expiry, confirmed and fence keys
-- (KEYS[4i-3 .. 4i]). ARGV: for each hold i, its hold id and the caller's now_ms
-- (ARGV[2i-1], ARGV[2i]). Returns one word per hold: HELD, GONE, FENCED or MISSING.
local answers = {}
for i = 1, #ARGV / 2 do
  local meta, expiry, confirmed, fence = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i]
  local hold_id, now = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  local answer = 'GONE'
  if redis.call('EXISTS', fence) == 1 then
    answer = 'FENCED'
  elseif redis.call('EXISTS', meta) == 0 then
    answer = 'MISSING'
  else
    local expires = redis.call('ZSCORE', expiry, hold_id)
    if (expires and tonumber(expires) > now) or redis.call('HEXISTS', confirmed, hold_id) == 1 then
      answer = 'HELD'
    end
  end
  answers[i] = answer
end
return answers
