-- The hold script: reserve one unit per hold, deciding a batch of holds in one call, in
-- order, each exactly as a call of its own would decide it (a hold that must wait alone, on a
-- fenced slot or for the platform's own offer, is a call of one). At a release most of a
-- worker's concurrent holds arrive in the same loop turn; one call per hold made Redis pay a
-- script call's fixed cost (the call, its KEYS and ARGV tables, the prelude) and the slot's
-- reads for every hold: a grant cost 25-58 µs of Redis time against 3 µs for the ceiling's
-- decrement (bench/profiles/engine3-*). Here the fixed cost is paid once a call; whether any
-- of the call's slots has a fence, a returning unit or a confirmed hold (at a release none
-- has) and the idempotency records are read for the whole call (one EXISTS, one MGET); a
-- slot's facts are read once a slot a call (one HMGET, one ZCARD, and the returning units'
-- ZCARD only when the call has any; the sweep only when something can have run out, see
-- `due` in slot_prelude.lua), its new holds' expiries written with one ZADD; the call's
-- grants are announced with one PUBLISH. On a few hot slots that took about a
-- third off Redis's CPU per grant; on holds spread over many slots, each still paying its own slot's
-- work, nothing measurable (bench/README.md, branch engine3). A grant's owner is written with
-- HSETNX, which is also the check that its hold id is new (bench/README.md, branch engine5).
--
-- KEYS: six family keys of each of the batch's slots, slot after slot (slot_prelude.lua's
-- order without CANCELLED, which a hold never reads: on spread slots each hold carries its
-- slot's keys, and every byte is packed and written by the worker and parsed by Redis; see
-- bench/README.md, branch engine4); then per hold its idempotency record and, when ARGV[4] is
-- '1' (one server), its account's marker: a grant then claims the account's one unfinished
-- hold in this same call (as account_claim.lua would), so an account that already holds
-- elsewhere is refused before anything is granted. A cluster cannot run a script over two
-- hash tags: there the caller sends only slots of one hash slot in a call and claims the
-- markers afterwards.
-- ARGV: slots, holds, replay_ttl_ms, claims_marker ('1' or '0'), then per hold seven values:
-- slot number (1-based, into the families), hold_id, account_id, now_ms, expires_at_ms,
-- marker, marker_px (the last two empty without a marker).
-- Reply: one reply per hold, in order: {'GRANTED', hold_id, expires}, {'REPLAYED', hold_id,
-- expires} (a repeated idempotency key gets its first answer back, whatever happened since),
-- {'REFUSED', code, ...} (a sold-out answer may refer to an earlier one, see sold_out_reply),
-- {'FENCED'} or {'MISSING'} (a slot Redis does not know: load.lua writes every field, so a
-- slot without a status).
local slots, holds, replay_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local claims = ARGV[4] == '1'
local per_hold = claims and 2 or 1
local first_hold_key = slots * 6
local NEVER = '9007199254740991'  -- slot_prelude.lua's: `due` with nothing to run out

-- What a slot's decisions share within this call: read on its first hold, then kept in step
-- with what this call does to it. `now` is the caller time the counts were taken at (a hold
-- at another time sweeps and counts again, as it would alone).
local state = {}

local function family(n)
  local base = (n - 1) * 6
  return KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4], KEYS[base + 5],
    KEYS[base + 6]
end

-- The expiries of the holds granted on a slot and not yet written (their owners are written
-- at the grant), with `due` if a grant lowered it: written before anything reads the slot's
-- holds again, and at the end.
local function write_pending(s)
  if #s.expiry > 0 then
    redis.call('ZADD', s.hold_expiry, unpack(s.expiry))
    s.expiry = {}
    if s.lowered then redis.call('HSET', s.meta, 'due', s.lowered) s.lowered = nil end
  end
end

-- What a release's slots almost never have: a rebuild's fence, a unit on its way back, a
-- confirmed hold. One EXISTS over those three keys of every slot of the call; only when it
-- finds some is each slot asked on its own (a second EXISTS over the fences tells which kind).
-- Asked slot by slot, the returning units' ZCARD and the confirmed holds' EXISTS were two
-- commands a slot and call, on spread slots nearly two a grant (bench/README.md, branch
-- engine7). Nothing in this script adds either kind, so what is empty now stays empty.
local fences, rare = {}, {}
for n = 1, slots do
  local base = (n - 1) * 6
  fences[n] = KEYS[base + 6]
  rare[#rare + 1], rare[#rare + 2], rare[#rare + 3] = KEYS[base + 6], KEYS[base + 4],
    KEYS[base + 5]
end
local rare_count = redis.call('EXISTS', unpack(rare))
local fenced_count = rare_count > 0 and redis.call('EXISTS', unpack(fences)) or 0
local any_fenced = fenced_count > 0
-- some slot of the call has returning units or confirmed holds: each slot counts its own
local any_kept = rare_count > fenced_count

-- Every hold's first answer, if its idempotency key was used before: one MGET for the call.
-- Records written by this call are kept in `answered` for a repeat later in the same call.
local replay_keys = {}
for i = 1, holds do replay_keys[i] = KEYS[first_hold_key + (i - 1) * per_hold + 1] end
local priors = redis.call('MGET', unpack(replay_keys))
local answered = {}

local function slot_state(n)
  local s = state[n]
  if s then return s end
  local meta, hold_expiry, hold_owner, returning, confirmed, fence = family(n)
  s = {meta = meta, hold_expiry = hold_expiry, hold_owner = hold_owner, returning = returning,
    confirmed = confirmed, expiry = {}, taken = false}
  state[n] = s
  if any_fenced and redis.call('EXISTS', fence) == 1 then s.fenced = true return s end
  s.m = redis.call('HMGET', meta, 'capacity', 'booked', 'release_at_ms', 'status', 'due')
  s.due = tonumber(s.m[5])
  return s
end

-- Remove what has run out by `now`, and keep in `due` the earliest time left in either set.
local function sweep(s, now)
  while true do
    local expired = redis.call('ZRANGEBYSCORE', s.hold_expiry, '-inf', now, 'LIMIT', 0, 500)
    if #expired == 0 then break end
    redis.call('ZREM', s.hold_expiry, unpack(expired))
    redis.call('HDEL', s.hold_owner, unpack(expired))
    if #expired < 500 then break end
  end
  redis.call('ZREMRANGEBYSCORE', s.returning, '-inf', now)
  local due = NEVER
  for _, key in ipairs({s.hold_expiry, s.returning}) do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if first[2] and tonumber(first[2]) < tonumber(due) then due = first[2] end
  end
  redis.call('HSET', s.meta, 'due', due)
  s.due = tonumber(due)
end

-- Count before a slot's first decision at a caller time, sweeping first when something can
-- have run out by then (`due`, slot_prelude.lua): removing what has run out before counting
-- is what makes a timer unnecessary; skipping the sweep while nothing can have run out is one
-- of the cuts that took 5-8 % off Redis's CPU a grant (bench/README.md, branch engine5).
local function count_at(s, now)
  if s.now == now then return end
  write_pending(s)
  if s.due == nil or tonumber(now) >= s.due then sweep(s, now) end
  s.returning_count = any_kept and redis.call('ZCARD', s.returning) or 0
  s.held = redis.call('ZCARD', s.hold_expiry)
  s.now = now
  s.sold_out = nil
end

-- A sold-out refusal carries the earliest time the answer could change on its own (the first
-- hold to run out or unit to return), so a worker can refuse repeats locally until then, and
-- the accounts holding or having booked a unit here: a repeat of theirs may be owed its first
-- grant, so a worker remembering this answer still sends them to Redis. The slot's later holds
-- in this call (until a grant or a sweep) get the same answer by reference: {'REFUSED',
-- 'SLOT_SOLD_OUT', next_free, i}, i (an integer, never an account) the hold whose reply holds
-- it in full. On a hot slot the answer names thousands of accounts, and repeated for each
-- refused hold of a call it was most of what Redis wrote and the worker parsed at the moment
-- the slot sold out (bench/profiles/engine4-7-*).
local function sold_out_reply(s, i)
  if s.sold_out then return {'REFUSED', 'SLOT_SOLD_OUT', s.sold_out[3], s.sold_out_at} end
  write_pending(s)
  -- `due` after count_at: later than the caller's time, at or before anything can run out
  local next_free = s.due < tonumber(NEVER) and string.format('%d', s.due) or '-1'
  local reply = {'REFUSED', 'SLOT_SOLD_OUT', next_free}
  for _, owner in ipairs(redis.call('HVALS', s.hold_owner)) do reply[#reply + 1] = owner end
  if any_kept then
    for _, owner in ipairs(redis.call('HVALS', s.confirmed)) do reply[#reply + 1] = owner end
  end
  -- the same answer for the slot's later holds in this call, until a grant or a sweep
  s.sold_out, s.sold_out_at = reply, i
  return reply
end

-- The account's marker: written when the account has none (the common case, one command);
-- otherwise a marker naming a live hold elsewhere refuses (the refusal is returned), and one
-- whose hold ran out by the caller's clock is overwritten (as account_claim.lua).
local function claim_marker(i, a, hold_id, now)
  local marker = KEYS[first_hold_key + (i - 1) * per_hold + 2]
  if redis.call('SET', marker, ARGV[a + 6], 'PX', ARGV[a + 7], 'NX') then return nil end
  local held = cjson.decode(redis.call('GET', marker))
  if tonumber(held[3]) > tonumber(now) then
    if held[2] ~= hold_id then return {'REFUSED', 'HOLD_ALREADY_ACTIVE', held[1], held[2]} end
  else
    redis.call('SET', marker, ARGV[a + 6], 'PX', ARGV[a + 7])
  end
  return nil
end

local function decide(i)
  local a = 4 + (i - 1) * 7
  local n = tonumber(ARGV[a + 1])
  local hold_id, account_id, now, expires = ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local replay_key = KEYS[first_hold_key + (i - 1) * per_hold + 1]
  local s = slot_state(n)
  if s.fenced then return {'FENCED'} end
  local m = s.m
  if not m[4] then return {'MISSING'} end

  local prior = answered[replay_key] or priors[i]
  if prior then
    local grant = cjson.decode(prior)
    if grant[1] ~= account_id then return {'REFUSED', 'IDEMPOTENCY_KEY_REUSED'} end
    return {'REPLAYED', grant[2], grant[3]}
  end

  count_at(s, now)
  -- a hold id names one hold on this slot for good: live (hold owner) or confirmed. Whether
  -- the slot has any confirmed hold is asked once a call, and only when the call's slots have
  -- any (`any_kept`): at a release they have none, and on a hot slot that spares a command a
  -- hold.
  if s.confirms == nil then
    s.confirms = any_kept and redis.call('EXISTS', s.confirmed) == 1
  end
  if s.confirms and redis.call('HEXISTS', s.confirmed, hold_id) == 1 then
    return {'REFUSED', 'VALIDATION_FAILED'}
  end
  local available = tonumber(m[1]) - tonumber(m[2]) - s.held - s.returning_count
  if m[4] ~= 'open' or tonumber(now) < tonumber(m[3]) or available <= 0 then
    if redis.call('HEXISTS', s.hold_owner, hold_id) == 1 then
      return {'REFUSED', 'VALIDATION_FAILED'}
    end
    -- A lottery session (摇号) takes requests, not holds, until its draw.
    if m[4] == 'lottery' then return {'REFUSED', 'SESSION_IS_LOTTERY'} end
    if m[4] ~= 'open' then return {'REFUSED', 'SLOT_CLOSED'} end
    if tonumber(now) < tonumber(m[3]) then return {'REFUSED', 'SLOT_NOT_RELEASED', m[3]} end
    return sold_out_reply(s, i)
  end
  -- A grant's owner is written now: one command both checks that the hold id is new on the
  -- slot and records it (taken back if the account's marker refuses).
  if redis.call('HSETNX', s.hold_owner, hold_id, account_id) == 0 then
    return {'REFUSED', 'VALIDATION_FAILED'}
  end
  if claims then
    local ok, refusal = pcall(claim_marker, i, a, hold_id, now)
    if not ok or refusal then
      redis.call('HDEL', s.hold_owner, hold_id)
      if not ok then error(refusal) end
      return refusal
    end
  end

  local e = #s.expiry
  s.expiry[e + 1], s.expiry[e + 2] = expires, hold_id
  if tonumber(expires) < s.due then s.due, s.lowered = tonumber(expires), expires end
  s.held = s.held + 1
  s.taken = true
  local record = cjson.encode({account_id, hold_id, expires})
  redis.call('SET', replay_key, record, 'PX', replay_ttl)
  answered[replay_key] = record
  return {'GRANTED', hold_id, expires}
end

-- A hold whose step fails in Redis (an error reply from a command) is answered with that
-- error alone; the holds before and after it are decided as they would be without it.
local replies = {}
for i = 1, holds do
  local ok, reply = pcall(decide, i)
  if ok then
    replies[i] = reply
  else
    replies[i] = redis.error_reply(type(reply) == 'table' and reply.err or tostring(reply))
  end
end
-- The slot-takes message, once for all of this call's grants: the ids of the slots that gave
-- units, joined by '}' (which no slot id holds, slot_keys.py). On holds spread over many slots
-- a message a slot was a message a grant, which every platform process read and parsed
-- (bench/README.md, branch grant7).
local taken, prefix = {}, nil
for n = 1, slots do
  local s = state[n]
  if s and not s.fenced then
    write_pending(s)
    if s.taken then
      local slot
      prefix, slot = string.match(s.meta, '^(.-){slot:(.-)}')
      taken[#taken + 1] = slot
    end
  end
end
if prefix then redis.call('PUBLISH', prefix .. 'guahao:slot-takes', table.concat(taken, '}')) end
return replies
