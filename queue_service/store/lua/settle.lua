-- Settle a pick whose read got fewer entries than it asked for: the lane has nothing more
-- to hand out now. The passes are given back what was not taken, and the lane leaves the
-- ready sets unless it was marked since the pick (a put came meanwhile: its entry may have
-- missed the read, so the lane stays ready). Its tenant leaves too when it has no ready
-- queue left.
-- KEYS[1] ready tenants, KEYS[2] the tenant's ready queues, KEYS[3] lane marks,
-- KEYS[4] passes, KEYS[5] weights
-- ARGV[1] tenant id, ARGV[2] queue, ARGV[3] the lane's mark count at the pick,
-- ARGV[4] entries asked for but not read
-- Returns 1 when the lane left the ready sets, else 0.
local tenant, queue, unused = ARGV[1], ARGV[2], tonumber(ARGV[4])
local lane = tenant .. '|' .. queue
if unused > 0 then
  local tenant_weight = tonumber(redis.call('HGET', KEYS[5], 't:' .. tenant)) or 1
  local queue_weight = tonumber(redis.call('HGET', KEYS[5], 'q:' .. queue)) or 1
  local tenant_pass = redis.call('HINCRBYFLOAT', KEYS[4], 't:' .. tenant, -unused / tenant_weight)
  local queue_pass = redis.call('HINCRBYFLOAT', KEYS[4], 'q:' .. lane, -unused / queue_weight)
  redis.call('ZADD', KEYS[1], 'XX', tenant_pass, tenant)
  redis.call('ZADD', KEYS[2], 'XX', queue_pass, queue)
end
if (redis.call('HGET', KEYS[3], lane) or '0') ~= ARGV[3] then
  return 0
end
redis.call('ZREM', KEYS[2], queue)
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], tenant)
end
return 1
