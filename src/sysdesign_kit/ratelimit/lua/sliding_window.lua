-- Sliding window counter: the twin of algorithms.sliding_window.
-- A step body (see one.lua): p = window, q = limit; the state is "index:prev:curr" (the
-- window index when written and the counts of the window before it and of it).
local window, limit = p, q
local current = math.floor(now / window)
local prev, curr = 0, 0
if stored then
  local i, a, b = string.match(stored, '^(%d+):(%d+):(%d+)$')
  if i then
    i = tonumber(i)
    if i == current then
      prev, curr = tonumber(a), tonumber(b)
    elseif i == current - 1 then
      prev = tonumber(b)
    end
  end
end
local elapsed = now - current * window
local weighted = prev * (window - elapsed)
-- algorithms.py tests weighted + (curr + cost) * window > limit * window; moving the
-- counts to one side keeps both sides below limit * window (exact as doubles).
if weighted > (limit - curr - cost) * window then
  if curr + cost <= limit then
    -- (weighted > 0 here, so prev > 0)
    retry = window - math.floor((limit - curr - cost) * window / prev) - elapsed
  else
    retry = 2 * window - math.floor((limit - cost) * window / curr) - elapsed
  end
  allowed, remaining, reset = false, limit - curr + math.floor(-weighted / window), window - elapsed
  if curr ~= 0 then
    reset = reset + window
  end
else
  curr = curr + cost
  allowed, remaining, retry = true, limit - curr + math.floor(-weighted / window), 0
  state = string.format('%d:%d:%d', current, prev, curr)
  -- Fully recovered once both counted windows have slid by (at once if nothing counts).
  reset = 0
  if curr ~= 0 then
    reset = 2 * window - elapsed
  elseif prev ~= 0 then
    reset = window - elapsed
  end
end
if remaining < 0 then
  remaining = 0
end
