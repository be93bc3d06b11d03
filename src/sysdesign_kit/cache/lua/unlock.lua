-- Give up the load lock of one cache key and wake every queued waiter.
-- KEYS[1]: the lock; KEYS[2]: the waiter count; KEYS[3]: the wake-up list.
-- ARGV[1]: the holder's token; ARGV[2]: milliseconds unclaimed wake-ups are kept (>= 1).
-- The lock is deleted only if it still holds this token (it may have expired and been taken
-- by another caller). Waiters are woken whoever holds the lock: the value they wait for was
-- just stored. One element per waiter is pushed to the list they block on (BLPOP); ones left
-- by waiters that gave up expire. Returns the number of waiters woken.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
local waiting = tonumber(redis.call('GET', KEYS[2]) or '0')
if waiting > 0 then
  redis.call('DEL', KEYS[2])
  for _ = 1, waiting do
    redis.call('RPUSH', KEYS[3], '1')
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
return waiting
