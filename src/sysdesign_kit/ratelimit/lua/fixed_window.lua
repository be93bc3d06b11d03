-- Fixed window counter: the twin of algorithms.fixed_window.
-- State: "index:count" (the window index when written and its count).
local function fixed_window(index, count, now, window, limit, cost)
  local current = fdiv(now, window)
  if index ~= current then
    count = 0
  end
  local reset = (current + 1) * window - now
  if count + cost > limit then
    return false, current, count, limit - count, reset, reset
  end
  count = count + cost
  if count == 0 then
    reset = 0
  end
  return true, current, count, limit - count, reset, 0
end

-- p = window_us, q = limit
steps.f = function(stored, now, window, limit, cost)
  local index, count = 0, 0
  if stored then
    local i, c = string.match(stored, '^(%d+):(%d+)$')
    if i then
      index, count = tonumber(i), tonumber(c)
    end
  end
  local allowed, current, c2, remaining, reset, retry =
    fixed_window(index, count, now, window, limit, cost)
  return allowed, int(current) .. ':' .. int(c2), remaining, reset, retry
end
