-- Token bucket in GCRA form: the twin of algorithms.gcra (same names, same integers).
-- A step body (see one.lua): p = interval, q = burst; the state is the theoretical arrival
-- time, a number (Redis stores it as decimal digits).
local interval, burst = p, q
local tat = tonumber(stored) or 0
local tau = interval * burst
local base = tat
if now > tat then
  base = now
end
local new_tat = base + cost * interval
local allow_at = new_tat - tau
if allow_at > now then
  allowed, remaining, reset, retry =
    false, math.floor((tau - base + now) / interval), base - now, allow_at - now
else
  allowed, state, remaining, reset, retry =
    true, new_tat, math.floor((tau - new_tat + now) / interval), new_tat - now, 0
end
