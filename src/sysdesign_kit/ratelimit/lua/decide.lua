-- Rate-limit decisions for one or more keys in one call: batches, all-or-nothing checks of
-- several limits, and peeks. Each algorithm's step body is wrapped into a function at the
-- marker below (see one.lua for the step contract, units and exactness).
--
-- KEYS[i]        state key of decision i
-- ARGV[1]        mode: "b" decide each key on its own, in order (a batch of requests);
--                      "a" all-or-nothing: store every key only if every one allows, else
--                          the allowing ones report their state as it stands (cost 0);
--                      "p" peek: allowed and retry for the cost, remaining and reset as
--                          the key stands; nothing stored
-- ARGV[2]        now in microseconds, or "" for the server's TIME (tests pass a clock)
-- ARGV[5i-2..5i+2] for decision i: algorithm code (g, s, f), p, q, cost, unit (1 for
--                microseconds; see one.lua)
--
-- Returns a status line with four integers per decision: allowed remaining reset_us
-- retry_us. A stored key expires when its reset time has passed (it is then fully
-- recovered).
local steps = {}
--[[ steps ]]

local mode = ARGV[1]
local now_us = tonumber(ARGV[2])
if not now_us then
  local t = redis.call('TIME')
  now_us = t[1] * 1000000 + t[2]
end

-- A step's answer, with reset and retry from units back to microseconds.
local function decide(step, stored, now, unit, p, q, cost)
  local allowed, state, remaining, reset, retry = step(stored, now, p, q, cost)
  if unit > 1 then
    local into = now_us - now * unit
    if reset > 0 then
      reset = reset * unit - into
    end
    if retry > 0 then
      retry = retry * unit - into
    end
  end
  return allowed, state, remaining, reset, retry
end

local function store(key, state, reset)
  redis.call('SET', key, state, 'PX', math.floor((reset + 999) / 1000))
end

local out = {}
local pending = {}
local all = true
for i = 1, #KEYS do
  local a = 5 * i - 2
  local step = steps[ARGV[a]]
  if not step then
    return redis.error_reply('unknown rate-limit algorithm ' .. tostring(ARGV[a]))
  end
  local p, q, cost = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local unit = tonumber(ARGV[a + 4])
  local now = now_us
  if unit > 1 then
    now = math.floor(now_us / unit)
  end
  local stored = redis.call('GET', KEYS[i])
  local allowed, state, remaining, reset, retry = decide(step, stored, now, unit, p, q, cost)
  if mode == 'p' then
    local _, _, r0, s0 = decide(step, stored, now, unit, p, q, 0)
    remaining, reset = r0, s0
  elseif not allowed then
    all = false
  elseif cost > 0 then
    -- (a cost of 0 only asks: nothing to store)
    if mode == 'b' then
      store(KEYS[i], state, reset)
    else
      pending[#pending + 1] = {i, state, reset, step, stored, now, unit, p, q}
    end
  end
  out[i] = string.format('%d %d %d %d', allowed and 1 or 0, remaining, reset, retry)
end
for _, w in ipairs(pending) do
  if all then
    store(KEYS[w[1]], w[2], w[3])
  else
    -- Another limit denied: nothing is charged, so report this key as it stands.
    local a0, _, r0, s0, t0 = decide(w[4], w[5], w[6], w[7], w[8], w[9], 0)
    out[w[1]] = string.format('%d %d %d %d', a0 and 1 or 0, r0, s0, t0)
  end
end
return redis.status_reply(table.concat(out, ' '))
