-- Move the account marker's expiry with its hold, only if it still names that hold.
-- ARGV: hold_id, marker_json, px
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)[2] == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
