-- Fixed window counter: the twin of algorithms.fixed_window.
-- A step body (see one.lua): p = window, q = limit; the state is "index:count" (the
-- window index when written and its count).
local window, limit = p, q
local current = math.floor(now / window)
local count = 0
if stored then
  local i, c = string.match(stored, '^(%d+):(%d+)$')
  if i and tonumber(i) == current then
    count = tonumber(c)
  end
end
reset = (current + 1) * window - now
if count + cost > limit then
  allowed, remaining, retry = false, limit - count, reset
else
  count = count + cost
  allowed, state, remaining, retry = true, string.format('%d:%d', current, count), limit - count, 0
  if count == 0 then
    reset = 0
  end
end
