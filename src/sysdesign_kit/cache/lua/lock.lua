-- Take the load lock of one cache key, or queue up to be woken when its holder is done.
-- KEYS[1]: the lock (holds the holder's token); KEYS[2]: how many waiters are queued.
-- ARGV[1]: the caller's token; ARGV[2]: the lock's TTL in milliseconds (>= 1).
-- Returns 0 when the caller now holds the lock. Otherwise the caller is counted as a waiter
-- and the reply is the milliseconds the current holder has left (>= 1): the longest it
-- needs to wait before the lock expires on its own (a holder that died).
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
local left = redis.call('PTTL', KEYS[1])
if left < 1 then left = 1 end
redis.call('INCR', KEYS[2])
-- The count lives as long as the lock it waits for: a holder that dies takes it along.
redis.call('PEXPIRE', KEYS[2], left)
return left
