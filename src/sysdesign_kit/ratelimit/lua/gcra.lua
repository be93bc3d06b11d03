-- Token bucket in GCRA form: the twin of algorithms.gcra (same names, same integers).
-- State: the theoretical arrival time, as decimal text.
local function gcra(tat, now, interval, burst, cost)
  local tau = interval * burst
  local base = tat
  if now > tat then
    base = now
  end
  local new_tat = base + cost * interval
  local allow_at = new_tat - tau
  if allow_at > now then
    return false, base, fdiv(tau - base + now, interval), base - now, allow_at - now
  end
  return true, new_tat, fdiv(tau - new_tat + now, interval), new_tat - now, 0
end

-- p = interval_us, q = burst
steps.g = function(stored, now, interval, burst, cost)
  local tat = stored and tonumber(stored) or 0
  local allowed, state, remaining, reset, retry = gcra(tat, now, interval, burst, cost)
  return allowed, int(state), remaining, reset, retry
end
