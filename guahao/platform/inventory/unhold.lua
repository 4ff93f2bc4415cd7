-- Undo a hold this very request was just granted, because the account turned out to have
-- another unfinished hold (the marker is claimed after the slot script; see hold() in
-- redis_inventory.py). Removes the hold and its idempotency record, so a retry with the same
-- key is decided afresh. KEYS[7] is the request's idempotency record.
-- ARGV: hold_id, account_id
local hold_id, account_id = ARGV[1], ARGV[2]
if redis.call('HGET', HOLD_OWNER, hold_id) == account_id then
  redis.call('ZREM', HOLD_EXPIRY, hold_id)
  redis.call('HDEL', HOLD_OWNER, hold_id)
end
local prior = redis.call('GET', KEYS[7])
if prior and cjson.decode(prior)[2] == hold_id then redis.call('DEL', KEYS[7]) end
return {'UNDONE'}
