-- Undo a hold this very request was just granted, because the account turned out to have
-- another unfinished hold (the marker is claimed after the slot script; see hold() in
-- redis_inventory.py). Removes the hold and its idempotency record, so a retry with the same
-- key is decided afresh. KEYS[8] is the request's idempotency record.
-- ARGV: hold_id, account_id
local hold_id, account_id = ARGV[1], ARGV[2]
if redis.call('EXISTS', FENCE) == 1 then return {'FENCED'} end
if redis.call('HGET', HOLD_OWNER, hold_id) == account_id then
  redis.call('ZREM', HOLD_EXPIRY, hold_id)
  redis.call('HDEL', HOLD_OWNER, hold_id)
  announce()
end
local prior = redis.call('GET', KEYS[8])
if prior and cjson.decode(prior)[2] == hold_id then redis.call('DEL', KEYS[8]) end
return {'UNDONE'}
