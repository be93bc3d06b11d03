-- Sliding window counter: the twin of algorithms.sliding_window.
-- State: "index:prev:curr" (the window index when written and the two counts).
local function sliding_window(index, prev, curr, now, window, limit, cost)
  local current = fdiv(now, window)
  if index ~= current then
    if index == current - 1 then
      prev = curr
    else
      prev = 0
    end
    curr = 0
  end
  local elapsed = now - current * window
  local weighted = prev * (window - elapsed)
  -- algorithms.py tests weighted + (curr + cost) * window > limit * window; moving the
  -- counts to one side keeps both sides below limit * window (exact as doubles).
  if weighted > (limit - curr - cost) * window then
    local retry
    if curr + cost <= limit then
      retry = window - fdiv((limit - curr - cost) * window, prev) - elapsed
    else
      retry = 2 * window - fdiv((limit - cost) * window, curr) - elapsed
    end
    local remaining = limit - curr + fdiv(-weighted, window)
    local reset = window - elapsed
    if curr ~= 0 then
      reset = reset + window
    end
    if remaining < 0 then
      remaining = 0
    end
    return false, current, prev, curr, remaining, reset, retry
  end
  curr = curr + cost
  local remaining = limit - curr + fdiv(-weighted, window)
  if remaining < 0 then
    remaining = 0
  end
  -- Fully recovered once both counted windows have slid by (at once if nothing counts).
  local reset = 0
  if curr ~= 0 then
    reset = 2 * window - elapsed
  elseif prev ~= 0 then
    reset = window - elapsed
  end
  return true, current, prev, curr, remaining, reset, 0
end

-- p = window_us, q = limit
steps.s = function(stored, now, window, limit, cost)
  local index, prev, curr = 0, 0, 0
  if stored then
    local i, p, c = string.match(stored, '^(%d+):(%d+):(%d+)$')
    if i then
      index, prev, curr = tonumber(i), tonumber(p), tonumber(c)
    end
  end
  local allowed, current, p2, c2, remaining, reset, retry =
    sliding_window(index, prev, curr, now, window, limit, cost)
  return allowed, int(current) .. ':' .. int(p2) .. ':' .. int(c2), remaining, reset, retry
end
