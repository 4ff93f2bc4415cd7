-- Decides one hit of a sliding-window counter, after adding the hits its process admitted
-- from memory and has not sent yet, and reads the window back: the limiter's exact path in
-- one call. It was three round trips, each behind the others' Redis work at a crowd (the
-- pending hits sent, the library's acquire script, and for a refusal the library's window
-- statistics on a client of its own): 10-56 ms an exact decision at a paced crowd on two
-- workers (bench/README.md, "issue 15, branch tail2").
--
-- The windows are the `limits` library's (acquire_sliding_window.lua): the same keys, the
-- same shift of the current window into the previous one, the same expiries, and the same
-- test (a hit that would take the weighted count past the limit is refused and counts
-- nothing), so the library's get_window_stats reads what was counted here.
--
-- KEYS[1] the previous window, KEYS[2] the current one; ARGV[1] the limit, ARGV[2] the window
-- in seconds, ARGV[3] the hits admitted from memory to add first (unconditionally).
-- Returns {1 if the hit is admitted else 0, the weighted count after, the previous window's
-- count and milliseconds to live, the current window's count and milliseconds to live}: the
-- count is the process's view, the rest the refusal's Retry-After, as the library computes it.
local limit = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2]) * 1000
local pending = tonumber(ARGV[3])

local current_ttl = tonumber(redis.call('pttl', KEYS[2]))
local current_count = 0
if current_ttl > 0 and current_ttl < expiry then
  -- the current window expired: shift it to the previous one, as the library does
  redis.call('rename', KEYS[2], KEYS[1])
  redis.call('set', KEYS[2], 0, 'PX', current_ttl + expiry)
  current_ttl = current_ttl + expiry
elseif current_ttl > 0 then
  current_count = tonumber(redis.call('get', KEYS[2])) or 0
end

local function add(amount)
  if current_ttl > 0 then
    current_count = redis.call('incrby', KEYS[2], amount)
  else  -- no such key: the library sets it with twice the window to live
    redis.call('set', KEYS[2], amount, 'PX', expiry * 2)
    current_ttl = expiry * 2
    current_count = amount
  end
end

if pending > 0 then
  add(pending)
end

local previous_count = tonumber(redis.call('get', KEYS[1])) or 0
local previous_ttl = tonumber(redis.call('pttl', KEYS[1])) or 0
if previous_ttl <= 0 then
  previous_ttl = 0
end
local weighted = math.floor(previous_count * previous_ttl / expiry) + current_count
local admitted = 0
if weighted + 1 <= limit then
  add(1)
  weighted = weighted + 1
  admitted = 1
end
if current_ttl < 0 then
  current_ttl = 0
end
return {admitted, weighted, previous_count, previous_ttl, current_count, current_ttl}
