-- Store one cache entry, stamped with the versions it is written under.
-- KEYS[1]: the entry (a hash); KEYS[2]: its namespace's version; KEYS[3..]: its tags' versions.
-- ARGV[1]: the bytes; ARGV[2]: the TTL in milliseconds (>= 1).
-- The entry: d = the bytes, v = the namespace version, "t:" .. tag version key = that version
-- (a missing version counts as "0"). Replaces the whole entry, so a rewrite drops old tags.
redis.call('DEL', KEYS[1])
local fields = {'d', ARGV[1], 'v', redis.call('GET', KEYS[2]) or '0'}
for i = 3, #KEYS do
  fields[#fields + 1] = 't:' .. KEYS[i]
  fields[#fields + 1] = redis.call('GET', KEYS[i]) or '0'
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
