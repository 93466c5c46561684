-- Settle a job's token estimate against its answer's usage: the bucket gives back what was
-- taken beyond the use, or takes what the answer used beyond the estimate (it may go below
-- zero: later jobs wait until the debt is refilled).
-- KEYS[1] bucket (hash: tokens, at)
-- ARGV[1] tokens to add (negative: to take), ARGV[2] the bucket's size
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if not state[2] then
  return 0
end
local tokens = math.min(tonumber(ARGV[2]), (tonumber(state[1]) or 0) + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens))
return 1
