-- Take down a rebuild's fence that no load followed (the rebuild failed, or SQL no longer
-- knows the slot). Compare-and-delete, so a later rebuild's fence stands. ARGV: token
if redis.call('GET', FENCE) == ARGV[1] then redis.call('DEL', FENCE) return 1 end
return 0
