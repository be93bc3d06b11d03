-- Shared by the rate-limit scripts (concatenated first; see ratelimit/redis.py).
--
-- Lua 5.1 numbers are IEEE doubles. The backend refuses rates whose values could reach
-- 2^53, so + - * on these integers are exact and only division needs care.

-- Each algorithm registers a step here under its one-letter code:
--   step(stored, now, p, q, cost) -> allowed, state, remaining, reset_us, retry_us
-- where `stored` is the key's value (false when absent) and `state` the value to store
-- when allowed.
local steps = {}

-- floor(a / b) exactly, for integers with b > 0: the rounded double quotient can land on
-- the wrong side of an integer, and one correction step puts it back.
local function fdiv(a, b)
  local q = math.floor(a / b)
  local r = a - q * b
  if r < 0 then
    q = q - 1
  elseif r >= b then
    q = q + 1
  end
  return q
end

-- Integers as decimal text: tostring() would print 1.7e+15.
local function int(x)
  return string.format('%.0f', x)
end
