-- Compare-and-delete: drop the account marker only if it still names this hold, so a late
-- clean-up never erases the marker of a newer hold. ARGV: hold_id
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)[2] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
