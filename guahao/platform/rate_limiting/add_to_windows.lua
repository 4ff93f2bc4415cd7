-- Adds hits counted in one worker process to sliding-window counters and reads each back.
-- The windows are the `limits` library's own (acquire_sliding_window.lua: the same keys, the
-- same shift of the current window into the previous one, the same expiries), so the
-- library's get_window_stats reads what was added here. Unlike the library's script it adds
-- unconditionally: the process already admitted these hits against its own view.
--
-- Four commands a counter at most, not seven: the current window's PTTL also says whether it
-- exists (-2), and the count after the addition is the INCRBY's reply (or the amount set), not
-- read again. Fewer where the others would tell nothing (at a release, each citizen holds
-- once: two counters new to Redis a grant, and they were two thirds of the sync's commands):
-- * a counter's first call (its hits negative) is most often for a key no process counted
--   yet: SET ... NX sets it as the missing-key branch below would, and then its previous
--   window does not exist either (it only comes from a shift, which leaves the current
--   window a window longer to live, so it never outlives it; Redis must not evict keys,
--   docs/operations.md): one command, not four. If the key is there after all (another
--   process counted it, or this one before forgetting it), the usual branches follow;
-- * a previous window that GET does not find has no time to live worth asking (a counter in
--   its first window);
-- * a previous window that GET finds has the current window's time to live less one window:
--   only a shift makes one (RENAME keeps the current window's expiry for it, and the new
--   current window is set to live a window longer: here, in decide_in_window.lua and in the
--   library's script alike), and both then run down together. So its PTTL is asked only
--   where the current window's told nothing (a key without an expiry, or one just set).
-- Each command is sent the arguments' own strings where it can (the hits, a window's two
-- lengths in milliseconds made once per call for each window length): a Lua number handed
-- to redis.call is formatted into a string first, a tenth of a new counter's cost here
-- (bench/limiter_script_cost.py).
--
-- For counter i: KEYS[2i-1] its previous window, KEYS[2i] its current window; ARGV[2i-1] the
-- window in seconds, ARGV[2i] the hits to add, negative for the counter's first call. Returns
-- each counter's weighted count after.
local counts = {}
local windows = {} -- window in seconds (ARGV) -> {its milliseconds, two of them as a string}
for i = 1, #KEYS / 2 do
  local previous = KEYS[2 * i - 1]
  local current = KEYS[2 * i]
  local window = windows[ARGV[2 * i - 1]]
  if window == nil then
    local ms = tonumber(ARGV[2 * i - 1]) * 1000
    window = {ms, string.format('%d', ms * 2)}
    windows[ARGV[2 * i - 1]] = window
  end
  local expiry = window[1]
  local hits = ARGV[2 * i]
  local amount = tonumber(hits)

  local current_count
  local previous_ttl = nil -- known from the current window's where it can be (above)
  local created = false
  if amount < 0 then
    amount = -amount
    hits = string.sub(hits, 2)
    created = redis.call('set', current, hits, 'PX', window[2], 'NX') ~= false
    current_count = amount
  end
  if not created then
    local current_ttl = tonumber(redis.call('pttl', current))
    if current_ttl > 0 and current_ttl < expiry then
      -- the current window expired: shift it to the previous one, as the library does (it
      -- sets the new window to 0 and adds: the same count and expiry as setting the amount)
      redis.call('rename', current, previous)
      redis.call('set', current, hits, 'PX', current_ttl + expiry)
      current_count = amount
      previous_ttl = current_ttl
    elseif current_ttl == -2 then  -- no such key
      redis.call('set', current, hits, 'PX', window[2])
      current_count = amount
    else
      current_count = redis.call('incrby', current, hits)
      if current_ttl > 0 then previous_ttl = current_ttl - expiry end
    end
  end

  local weighted = current_count
  local previous_count = not created and tonumber(redis.call('get', previous))
  if previous_count then
    if previous_ttl == nil then previous_ttl = tonumber(redis.call('pttl', previous)) end
    if previous_ttl > 0 then
      weighted = weighted + math.floor(previous_count * previous_ttl / expiry)
    end
  end
  counts[i] = weighted
end
return counts
