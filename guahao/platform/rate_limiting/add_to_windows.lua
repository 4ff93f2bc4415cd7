-- Adds hits counted in one worker process to sliding-window counters and reads each back.
-- The windows are the `limits` library's own (acquire_sliding_window.lua: the same keys, the
-- same shift of the current window into the previous one, the same expiries), so the
-- library's get_window_stats reads what was added here. Unlike the library's script it adds
-- unconditionally: the process already admitted these hits against its own view.
--
-- Four commands a counter, not seven: the current window's PTTL also says whether it exists
-- (-2), and the count after the addition is the INCRBY's reply (or the amount set), not read
-- again. At a release crowd a sync carries about three counters per refusal.
--
-- For counter i: KEYS[2i-1] its previous window, KEYS[2i] its current window; ARGV[2i-1] the
-- window in seconds, ARGV[2i] the hits to add. Returns each counter's weighted count after.
local counts = {}
for i = 1, #KEYS / 2 do
  local previous = KEYS[2 * i - 1]
  local current = KEYS[2 * i]
  local expiry = tonumber(ARGV[2 * i - 1]) * 1000
  local amount = tonumber(ARGV[2 * i])

  local current_ttl = tonumber(redis.call('pttl', current))
  local current_count
  if current_ttl > 0 and current_ttl < expiry then
    -- the current window expired: shift it to the previous one, as the library does (it
    -- sets the new window to 0 and adds: the same count and expiry as setting the amount)
    redis.call('rename', current, previous)
    redis.call('set', current, amount, 'PX', current_ttl + expiry)
    current_count = amount
  elseif current_ttl == -2 then  -- no such key
    redis.call('set', current, amount, 'PX', expiry * 2)
    current_count = amount
  else
    current_count = redis.call('incrby', current, amount)
  end

  local previous_count = tonumber(redis.call('get', previous)) or 0
  local previous_ttl = tonumber(redis.call('pttl', previous)) or 0
  if previous_ttl <= 0 then
    previous_ttl = 0
  end
  counts[i] = math.floor(previous_count * previous_ttl / expiry) + current_count
end
return counts
