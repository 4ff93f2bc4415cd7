-- Whether a hold is still in the pool: asked by the hold path once its record is written, to
-- learn whether a Redis lost and reloaded meanwhile (from a SQL read that could not see the
-- record yet) still knows the hold. Writes nothing. A confirmed hold counts as held.
-- ARGV: hold_id, now_ms. Returns {'HELD'} or {'GONE'}.
if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
if redis.call('EXISTS', META) == 0 then return {'MISSING'} end
local expires = redis.call('ZSCORE', HOLD_EXPIRY, ARGV[1])
if expires and tonumber(expires) > tonumber(ARGV[2]) then return {'HELD'} end
if redis.call('HEXISTS', CONFIRMED, ARGV[1]) == 1 then return {'HELD'} end
return {'GONE'}
