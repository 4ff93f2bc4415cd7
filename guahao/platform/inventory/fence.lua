-- Raise a rebuild's fence on one slot and answer what Redis holds there now.
-- While the fence stands every step that changes the slot answers FENCED (the caller waits
-- and retries), so what this snapshot shows stays true until the rebuild's load replaces
-- it. The PX bounds a fence whose rebuild died. ARGV: token, px
-- Returns {'BUSY'} when another rebuild's fence stands, else {'FENCED', present,
-- holds (hold_id, account_id, expires_at_ms)..., '|', confirmed (hold_id, account_id)...}.
if redis.call('SET', FENCE, ARGV[1], 'NX', 'PX', ARGV[2]) == false then return {'BUSY'} end
local reply = {'FENCED', redis.call('EXISTS', META)}
local owners = redis.call('HGETALL', HOLD_OWNER)
for j = 1, #owners, 2 do
  reply[#reply + 1] = owners[j]
  reply[#reply + 1] = owners[j + 1]
  reply[#reply + 1] = redis.call('ZSCORE', HOLD_EXPIRY, owners[j]) or '0'
end
reply[#reply + 1] = '|'
local confirmed = redis.call('HGETALL', CONFIRMED)
for j = 1, #confirmed do reply[#reply + 1] = confirmed[j] end
return reply
