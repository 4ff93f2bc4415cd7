-- Prepended to every slot script: the key layout and lazy expiry they share.
-- KEYS[1..7] are the slot's family, all under one hash tag {slot:<id>} so a script touches
-- one cluster shard. Times are epoch milliseconds passed in by the caller (never the Redis
-- clock), so that the service's clock, not the server's, decides when a hold is over.
local META = KEYS[1]         -- hash: capacity, booked, release_at_ms, status, due (below)
local HOLD_EXPIRY = KEYS[2]  -- zset: hold_id -> expires_at_ms
local HOLD_OWNER = KEYS[3]   -- hash: hold_id -> account_id
local RETURNING = KEYS[4]    -- zset: unit_id -> return_at_ms
local CONFIRMED = KEYS[5]    -- hash: confirmed hold_id -> account_id (repeats count once)
local CANCELLED = KEYS[6]    -- set: cancelled unit ids (repeats count once)
local FENCE = KEYS[7]        -- string: a rebuild's token while it reloads this slot

-- A hold is live while now < expires_at_ms; a returning unit is unavailable while
-- now < return_at_ms. Removing what has run out before counting is what makes a timer
-- unnecessary for correctness. Holds go in batches so unpack() stays far below Lua's limit.
local function purge_holds(now)
  while true do
    local expired = redis.call('ZRANGEBYSCORE', HOLD_EXPIRY, '-inf', now, 'LIMIT', 0, 500)
    if #expired == 0 then break end
    redis.call('ZREM', HOLD_EXPIRY, unpack(expired))
    redis.call('HDEL', HOLD_OWNER, unpack(expired))
    if #expired < 500 then break end
  end
end

local function purge(now)
  purge_holds(now)
  redis.call('ZREMRANGEBYSCORE', RETURNING, '-inf', now)
end

-- META's `due`: no hold runs out and no returning unit returns before it (it is at or before
-- every score in HOLD_EXPIRY and RETURNING), so the hold script sweeps only once the caller's
-- time reaches it; absent, the next hold sweeps and sets it. Removing entries leaves it true;
-- every script that adds a hold or a returning unit keeps it so (with lower_due; hold_many.lua
-- within its call), and a load sets it. A `due` earlier than need be only costs a sweep that finds nothing.
local NEVER = '9007199254740991'  -- the `due` of a slot with nothing to run out

local function lower_due(at)
  local due = redis.call('HGET', META, 'due')
  if due and tonumber(at) < tonumber(due) then redis.call('HSET', META, 'due', at) end
end

-- The snapshot every caller sees, read after purge(): capacity, booked, held, returning,
-- available, release_at_ms, status.
local function tally()
  local m = redis.call('HMGET', META, 'capacity', 'booked', 'release_at_ms', 'status')
  local capacity, booked = tonumber(m[1]), tonumber(m[2])
  local held = redis.call('ZCARD', HOLD_EXPIRY)
  local returning = redis.call('ZCARD', RETURNING)
  return {capacity, booked, held, returning, capacity - booked - held - returning, m[3], m[4]}
end

-- Tell every worker process that a unit of this slot may have come back, so that none keeps
-- answering "sold out" from memory (sold_out_view.py). Called by every script that can give
-- a unit back; the channel is the key prefix's, the message the slot id. Subscribers read it
-- only after this script has finished, so they never see the state before the change.
local function announce()
  local prefix, slot = string.match(KEYS[1], '^(.-){slot:(.-)}')
  redis.call('PUBLISH', prefix .. 'guahao:slot-returns', slot)
end

-- Tell every worker process that a unit of this slot was taken (a grant), so that none keeps
-- showing the slot's old count (availability_answers.py). A channel of its own: the sold-out
-- view has nothing to drop when a unit goes.
local function announce_take()
  local prefix, slot = string.match(KEYS[1], '^(.-){slot:(.-)}')
  redis.call('PUBLISH', prefix .. 'guahao:slot-takes', slot)
end
