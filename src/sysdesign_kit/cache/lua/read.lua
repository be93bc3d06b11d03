-- Read (ARGV[1] = "g") or delete (ARGV[1] = "d") one cache entry.
-- KEYS[1]: the entry (a hash, see write.lua); KEYS[2]: its namespace's version.
-- An entry is live when its namespace version and every tag version it carries are still
-- the current ones. A read returns the bytes of a live entry, else false; a delete returns
-- 1 when a live entry was there, else 0. Either way an outdated entry is removed.
-- Tag version keys are named by the entry itself (the caller cannot know them), so they are
-- not in KEYS: on Redis Cluster they must share the entry's slot (see docs/cache.md).
local entry = redis.call('HGETALL', KEYS[1])
if #entry == 0 then
  if ARGV[1] == 'd' then return 0 end
  return false
end
local version = redis.call('GET', KEYS[2]) or '0'
local data = nil
local live = true
for i = 1, #entry, 2 do
  local field = entry[i]
  if field == 'd' then
    data = entry[i + 1]
  elseif field == 'v' then
    if entry[i + 1] ~= version then live = false end
  elseif string.sub(field, 1, 2) == 't:' then
    if (redis.call('GET', string.sub(field, 3)) or '0') ~= entry[i + 1] then live = false end
  end
end
if data == nil then live = false end
if ARGV[1] == 'd' then
  redis.call('DEL', KEYS[1])
  if live then return 1 end
  return 0
end
if not live then
  redis.call('DEL', KEYS[1])
  return false
end
return data
