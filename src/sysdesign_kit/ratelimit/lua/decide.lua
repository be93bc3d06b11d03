-- Rate-limit decisions for one or more keys, in one call (concatenated after the
-- algorithm files).
--
-- KEYS[i]        state key of decision i
-- ARGV[1]        mode: "b" decide each key on its own, in order (a batch of requests);
--                      "a" all-or-nothing: store every key only if every one allows, else
--                          the allowing ones report their state as it stands (cost 0);
--                      "p" peek: allowed and retry for the cost, remaining and reset as
--                          the key stands; nothing stored
-- ARGV[2]        now in microseconds, or "" for the server's TIME (tests pass a clock)
-- ARGV[4i-1..4i+2] for decision i: algorithm code (g, s, f), p, q, cost
--
-- Returns text with four integers per decision: allowed remaining reset_us retry_us.
-- A stored key expires when its reset time has passed (it is then fully recovered).
if redis.replicate_commands then
  -- Redis < 5 replicates scripts verbatim, which TIME makes non-deterministic.
  redis.replicate_commands()
end

local mode = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function store(key, state, reset)
  redis.call('SET', key, state, 'PX', fdiv(reset + 999, 1000))
end

local out = {}
local pending = {}
local all = true
for i = 1, #KEYS do
  local a = 4 * i - 1
  local step = steps[ARGV[a]]
  if not step then
    return redis.error_reply('unknown rate-limit algorithm ' .. tostring(ARGV[a]))
  end
  local p, q, cost = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local stored = redis.call('GET', KEYS[i])
  local allowed, state, remaining, reset, retry = step(stored, now, p, q, cost)
  if mode == 'p' then
    local _, _, r0, s0 = step(stored, now, p, q, 0)
    remaining, reset = r0, s0
  elseif not allowed then
    all = false
  elseif cost > 0 then
    -- (a cost of 0 only asks: nothing to store)
    if mode == 'b' then
      store(KEYS[i], state, reset)
    else
      pending[#pending + 1] = {i, state, reset, step, stored, p, q}
    end
  end
  out[i] = {allowed and 1 or 0, remaining, reset, retry}
end
for _, w in ipairs(pending) do
  if all then
    store(KEYS[w[1]], w[2], w[3])
  else
    -- Another limit denied: nothing is charged, so report this key as it stands.
    local a0, _, r0, s0, t0 = w[4](w[5], now, w[6], w[7], 0)
    out[w[1]] = {a0 and 1 or 0, r0, s0, t0}
  end
end
for i = 1, #out do
  local o = out[i]
  out[i] = string.format('%d %.0f %.0f %.0f', o[1], o[2], o[3], o[4])
end
return table.concat(out, ' ')
