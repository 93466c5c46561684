-- Take a job's share of every budget it falls under, all or nothing: a request and its
-- estimated tokens per minute, of its upstream route and of its tenant. Each budget is a
-- token bucket holding at most a minute's worth, refilled evenly. A bucket lends: once its
-- level reaches the job's threshold the whole amount is taken, and the level may go below
-- zero (later jobs wait for the debt to be refilled), so a big job is never starved by small
-- ones. An offline job's threshold keeps the bucket's last part for online jobs. While the
-- route cools down (its upstream answered 429, or 503 with Retry-After), nothing is taken.
-- KEYS[1] the route's cooldown (string, expiring), KEYS[2 ..] buckets (hash: tokens, at)
-- ARGV[1] now (ms), then per bucket: its size (per minute), the amount to take, the level
-- it must have reached first
-- Returns 0 when taken, else the milliseconds to wait before trying again.
local cooling = redis.call('PTTL', KEYS[1])
if cooling > 0 then
  return cooling
end
local now = tonumber(ARGV[1])
local levels, wait = {}, 0
for i = 2, #KEYS do
  local at_arg = 3 * (i - 2) + 2
  local size, need = tonumber(ARGV[at_arg]), tonumber(ARGV[at_arg + 2])
  local rate = size / 60000
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tokens = tonumber(state[1]) or size
  local at = tonumber(state[2]) or now
  tokens = math.min(size, tokens + math.max(0, now - at) * rate)
  levels[i] = tokens
  if tokens < need then
    wait = math.max(wait, math.ceil((need - tokens) / rate))
  end
end
if wait > 0 then
  return wait
end
for i = 2, #KEYS do
  local amount = tonumber(ARGV[3 * (i - 2) + 3])
  redis.call('HSET', KEYS[i], 'tokens', tostring(levels[i] - amount), 'at', now)
  redis.call('PEXPIRE', KEYS[i], 600000)
end
return 0
