-- Take the load lock of one cache key, or queue up to be woken when its holder is done.
-- Run after read.lua's text wrapped as the function read() (see redis_lock.py), so taking
-- the lock also answers what a holder must check first: whether another process stored
-- the entry between this caller's miss and its lock.
-- KEYS[1]: the entry; KEYS[2]: its namespace's version (both for read());
-- KEYS[3]: the lock (holds the holder's token); KEYS[4]: how many waiters are queued.
-- ARGV[1]: "g" (read()'s mode); ARGV[2]: the caller's token; ARGV[3]: the lock's TTL in ms.
-- Returns {0, the live entry's bytes or false} when the caller now holds the lock.
-- Otherwise the caller is counted as a waiter and the reply is {ms, false}: the
-- milliseconds (>= 1) the current holder has left, the longest it needs to wait before
-- the lock expires on its own (a holder that died).
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {0, read()}
end
local left = redis.call('PTTL', KEYS[3])
if left < 1 then left = 1 end
redis.call('INCR', KEYS[4])
-- The count lives as long as the lock it waits for: a holder that dies takes it along.
redis.call('PEXPIRE', KEYS[4], left)
return {left, false}
