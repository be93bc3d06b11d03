-- A circuit breaker's shared state: one operation, atomically. The twin of
-- sysdesign_kit/breaker/redis_rules.py `step` (read its docstring for the hash's fields
-- and the operations); a property test holds the two together.
--
-- KEYS[1]   the breaker's hash
-- ARGV[1]   operation: f flush, t trip, a acquire, r record, l release,
--           o force_open, c force_closed, z reset
-- ARGV[2]   now in seconds, or "" for the server's TIME (tests pass their clock)
-- ARGV[3]   the caller's shared epoch, or "" when it knows none
-- ARGV[4-6] a, b, c: calls, failures, slow calls to add (f, t); a = 1 for a failed trial (r)
-- ARGV[7-17] failure_rate, minimum_calls, slow_call_rate ("" none), open_for,
--           open_for_growth, open_for_max ("" none), half_open_calls, bucket width (s),
--           buckets, trial lease (s), ttl (s)
--
-- Returns the status line
-- "state epoch remaining trips trials passed forced admitted calls failures slow".
--
-- Redis >= 5 replicates a script's effects, not the script, so reading TIME before a write
-- is allowed. Numbers are doubles, as in Python: every comparison and sum below is the one
-- the twin makes on the same values.
local op = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local caller = tonumber(ARGV[3])
local a, b, c = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local rate, minimum, slow_rate = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local open_for, growth, open_max = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local trial_calls = tonumber(ARGV[13])
local width, span = tonumber(ARGV[14]), tonumber(ARGV[15])
local lease, ttl = tonumber(ARGV[16]), tonumber(ARGV[17])

-- decode
local raw = redis.call('HGETALL', KEYS[1])
local state, epoch, since, untl = 'closed', math.floor(now * 1000), now, 0
local trips, trials, passed, forced = 0, 0, 0, false
local buckets = {}
local changed = #raw == 0
for i = 1, #raw, 2 do
  local field, value = raw[i], raw[i + 1]
  if string.sub(field, 1, 1) == 'b' then
    local x, y, z = string.match(value, '^(%d+) (%d+) (%d+)$')
    buckets[tonumber(string.sub(field, 2))] = {tonumber(x), tonumber(y), tonumber(z)}
  elseif field == 'state' then
    state = value
  elseif field == 'epoch' then
    epoch = tonumber(value)
  elseif field == 'since' then
    since = tonumber(value)
  elseif field == 'until' then
    untl = tonumber(value)
  elseif field == 'trips' then
    trips = tonumber(value)
  elseif field == 'trials' then
    trials = tonumber(value)
  elseif field == 'passed' then
    passed = tonumber(value)
  elseif field == 'forced' then
    forced = value == '1'
  end
end
local old = {state, epoch, since, untl, trips, trials, passed, forced}
local admitted = false
local current = math.floor(now / width)
local oldest = current - span

local function totals()
  local calls, failures, slow = 0, 0, 0
  for number, counts in pairs(buckets) do
    if number > oldest then
      calls = calls + counts[1]
      failures = failures + counts[2]
      slow = slow + counts[3]
    end
  end
  return calls, failures, slow
end

-- state.py: BreakerPolicy.open_duration, then _trip
local function trip()
  trips = trips + 1
  local duration = open_for
  if growth ~= 1 and trips > 1 then
    duration = open_for * growth ^ (trips - 1)
  end
  if open_max and duration > open_max then
    duration = open_max
  end
  state, epoch, since, untl = 'open', epoch + 1, now, now + duration
  trials, passed, forced = 0, 0, false
end

local function fresh(new_state, new_forced)
  state, epoch, since, untl = new_state, epoch + 1, now, 0
  trials, passed, forced = 0, 0, new_forced
end

if op == 'f' or op == 't' then
  if state == 'closed' and caller == epoch then
    if a > 0 or b > 0 or c > 0 then
      local bucket = buckets[current] or {0, 0, 0}
      bucket[1], bucket[2], bucket[3] = bucket[1] + a, bucket[2] + b, bucket[3] + c
      buckets[current] = bucket
      changed = true
    end
    for number in pairs(buckets) do
      if number <= oldest then
        buckets[number] = nil
        changed = true
      end
    end
    if not forced then
      if op == 't' then
        trip()
      elseif b > 0 or c > 0 then
        -- state.py: BreakerPolicy.should_trip
        local calls, failures, slow = totals()
        if calls >= minimum and (failures / calls >= rate or (slow_rate and slow / calls >= slow_rate)) then
          trip()
        end
      end
    end
  end
elseif op == 'a' then
  if state == 'half_open' and now >= since + lease then
    fresh('half_open', false)
  end
  -- state.py: acquire
  if state == 'closed' then
    admitted = true
  else
    local refused = false
    if state == 'open' then
      if forced or now < untl then
        refused = true
      else
        fresh('half_open', false)
      end
    end
    if not refused and trials < trial_calls then
      trials = trials + 1
      admitted = true
    end
  end
elseif op == 'r' then
  -- state.py: record, for a trial (a CLOSED period ignores it: no window is passed)
  if caller == epoch and state == 'half_open' then
    if a > 0 then
      trip()
    elseif passed + 1 >= trial_calls then
      fresh('closed', false)
      trips = 0
    else
      passed = passed + 1
    end
  end
elseif op == 'l' then
  if caller == epoch and state == 'half_open' and trials ~= 0 then
    trials = trials - 1
  end
elseif op == 'o' then
  fresh('open', true)
  untl = math.huge
elseif op == 'c' then
  fresh('closed', true)
  trips = 0
elseif op == 'z' then
  fresh('closed', false)
  trips = 0
else
  return redis.error_reply('unknown operation ' .. tostring(op))
end

if epoch ~= old[2] then
  buckets = {}
end
local new = {state, epoch, since, untl, trips, trials, passed, forced}
for i = 1, 8 do
  if new[i] ~= old[i] then
    changed = true
  end
end
if changed then
  local fields = {
    'state', state,
    'epoch', string.format('%d', epoch),
    'since', string.format('%.17g', since),
    'until', string.format('%.17g', untl),
    'trips', string.format('%d', trips),
    'trials', string.format('%d', trials),
    'passed', string.format('%d', passed),
    'forced', forced and '1' or '0',
  }
  for number, counts in pairs(buckets) do
    fields[#fields + 1] = string.format('b%d', number)
    fields[#fields + 1] = string.format('%d %d %d', counts[1], counts[2], counts[3])
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(fields))
  if not forced then
    local life = ttl
    if state == 'open' and untl > now then
      life = life + (untl - now)
    end
    -- an open time grown beyond any cap keeps the hash (PEXPIRE takes no such number)
    if life <= 1e9 then
      redis.call('PEXPIRE', KEYS[1], math.ceil(life * 1000))
    end
  end
end

local remaining = 0
local calls, failures, slow = 0, 0, 0
if state == 'open' then
  remaining = untl - now
elseif state == 'closed' then
  calls, failures, slow = totals()
end
return redis.status_reply(string.format(
  '%s %d %.17g %d %d %d %d %d %d %d %d', state, epoch, remaining, trips, trials, passed,
  forced and 1 or 0, admitted and 1 or 0, calls, failures, slow))
