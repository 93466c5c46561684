-- Take a job's share of every budget it falls under, all or nothing: a request and its
-- estimated tokens per minute, of its upstream route and of its tenant. Each budget is a
-- token bucket holding at most a minute's worth, refilled evenly. An offline job leaves the
-- bucket's last `reserve` part to online jobs. While the route cools down (its upstream
-- answered 429 or 503 with Retry-After), nothing is taken.
-- KEYS[1] the route's cooldown (string, expiring), KEYS[2 ..] buckets (hash: tokens, at)
-- ARGV[1] now (ms), ARGV[2] reserve (a fraction of a bucket's size: 0 for online jobs),
-- then per bucket: its size (per minute), the amount to take
-- Returns 0 when taken, else the milliseconds to wait before trying again.
local cooling = redis.call('PTTL', KEYS[1])
if cooling > 0 then
  return cooling
end
local now, reserve = tonumber(ARGV[1]), tonumber(ARGV[2])
local levels, wait = {}, 0
for i = 2, #KEYS do
  local size = tonumber(ARGV[2 * i - 1])
  local amount = math.min(tonumber(ARGV[2 * i]), size)
  local rate = size / 60000
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tokens = tonumber(state[1]) or size
  local at = tonumber(state[2]) or now
  tokens = math.min(size, tokens + math.max(0, now - at) * rate)
  levels[i] = tokens
  local short = amount + reserve * size - tokens
  if short > 0 then
    wait = math.max(wait, math.ceil(short / rate))
  end
end
if wait > 0 then
  return wait
end
for i = 2, #KEYS do
  local size = tonumber(ARGV[2 * i - 1])
  local amount = math.min(tonumber(ARGV[2 * i]), size)
  redis.call('HSET', KEYS[i], 'tokens', tostring(levels[i] - amount), 'at', now)
  redis.call('PEXPIRE', KEYS[i], 120000)
end
return 0
