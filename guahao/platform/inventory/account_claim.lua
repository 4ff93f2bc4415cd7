-- Claim an account's one unfinished hold (KEYS[1] = {acct:<id>}:hold).
-- The marker holds [slot_id, hold_id, expires_at_ms]. It is taken while the hold it names
-- is live by the caller's clock; a marker naming a hold that ran out is overwritten. This is
-- SET NX with the expiry judged by the service's time, not only by the key's PX (which
-- follows the server's clock and is kept as garbage collection).
-- ARGV: marker_json, now_ms, px
local current = redis.call('GET', KEYS[1])
if current then
  local held = cjson.decode(current)
  if tonumber(held[3]) > tonumber(ARGV[2]) then return {'TAKEN', held[1], held[2]} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {'CLAIMED'}
