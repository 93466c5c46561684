-- Mark a lane (one tenant's stream of a queue at one level) as maybe holding work: the
-- queue joins its tenant's ready queues, the tenant the level's ready tenants (a newcomer
-- starts at the virtual time, never below its own last pass: idling earns no credit), the
-- lane's mark count goes up and an idle worker is woken. Called after each put and each
-- entry handed back; a lane marked but empty costs one empty read.
-- Workers serving only some queues (`--queues`) wait on their queues' own wake lists.
-- KEYS[1] ready tenants, KEYS[2] the tenant's ready queues, KEYS[3] lane marks,
-- KEYS[4] passes, KEYS[5] wake list, KEYS[6] queues served by workers serving only some,
-- KEYS[7] the queue's own wake list
-- ARGV[1] tenant id, ARGV[2] queue
local tenant, queue = ARGV[1], ARGV[2]
local lane = tenant .. '|' .. queue
redis.call('HINCRBY', KEYS[3], lane, 1)
if not redis.call('ZSCORE', KEYS[2], queue) then
  local floor = tonumber(redis.call('HGET', KEYS[4], 'vt:' .. tenant)) or 0
  local last = tonumber(redis.call('HGET', KEYS[4], 'q:' .. lane)) or 0
  redis.call('ZADD', KEYS[2], math.max(floor, last), queue)
end
if not redis.call('ZSCORE', KEYS[1], tenant) then
  local floor = tonumber(redis.call('HGET', KEYS[4], 'vt')) or 0
  local last = tonumber(redis.call('HGET', KEYS[4], 't:' .. tenant)) or 0
  redis.call('ZADD', KEYS[1], math.max(floor, last), tenant)
end
redis.call('LPUSH', KEYS[5], 1)
redis.call('LTRIM', KEYS[5], 0, 63)
if redis.call('SISMEMBER', KEYS[6], queue) == 1 then
  redis.call('LPUSH', KEYS[7], 1)
  redis.call('LTRIM', KEYS[7], 0, 7)
end
return 1
