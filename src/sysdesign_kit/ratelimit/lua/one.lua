-- One rate-limit decision for one key: the hot path. The algorithm's step body (gcra.lua,
-- sliding_window.lua or fixed_window.lua) is inserted at the marker below.
--
-- KEYS[1]  the key's state
-- ARGV[1]  now in microseconds, or "" for the server's TIME (tests pass a clock)
-- ARGV[2]  p, ARGV[3] q: the algorithm's two parameters
-- ARGV[4]  cost (0 asks without charging)
-- ARGV[5]  unit (absent for 1): the step runs on `now` in whole units of this many
--          microseconds (p and its times are in units too); reset and retry come back in
--          microseconds, to the start of the unit where they end (never earlier)
--
-- Returns the status line "allowed remaining reset_us retry_us" (cheaper for a client to
-- read than an array). A charged key expires when its reset time has passed: it is then
-- fully recovered, the same as absent.
--
-- Every call runs this file's top level, so it defines no functions and builds no tables.
-- Redis >= 5 replicates a script's effects, not the script, so reading TIME before a write
-- is allowed without redis.replicate_commands().
--
-- Exactness: Lua numbers are IEEE doubles. The backend binds only rates that keep every
-- value below 2^53, so + - * on them are exact. Division: for integers a, b with
-- |a| < 2^53 and b >= 1, math.floor(a / b) is floor(a / b) exactly. (Were the rounded
-- quotient to reach the integer n above a/b, then n - a/b >= 1/b would be at most half a
-- unit in the last place of a/b, i.e. a/b * 2^-53, so |a| >= 2^53. The same bound holds
-- below.) Every numerator here is below 2^53, so no correction step is needed.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end
local p, q, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local unit = ARGV[5]
local now_us = now
if unit then
  unit = tonumber(unit)
  now = math.floor(now_us / unit)
end
local stored = redis.call('GET', KEYS[1])
local allowed, state, remaining, reset, retry
--[[ step ]]
if unit then
  local into = now_us - now * unit
  if reset > 0 then
    reset = reset * unit - into
  end
  if retry > 0 then
    retry = retry * unit - into
  end
end
if not allowed then
  return redis.status_reply(string.format('0 %d %d %d', remaining, reset, retry))
end
if cost > 0 then
  redis.call('SET', KEYS[1], state, 'PX', math.floor((reset + 999) / 1000))
end
return redis.status_reply(string.format('1 %d %d 0', remaining, reset))
