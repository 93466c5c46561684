-- Pick the lane a worker reads next at one level, by weighted fair queueing: the ready
-- tenant with the lowest pass, then that tenant's ready queue with the lowest pass. Both
-- passes advance by the entries asked for over their weight, so each tenant gets the share
-- of the level its weight says, and each queue its share of the tenant's. Paused queues
-- leave the ready sets (resuming marks their lanes again); queues this worker does not serve
-- are skipped, and so are lanes parked until their budget has room. The lane is noted as
-- active, where silent workers' entries are looked for.
-- KEYS[1] ready tenants, KEYS[2] lane marks, KEYS[3] passes, KEYS[4] weights,
-- KEYS[5] paused queues, KEYS[6] active lanes, KEYS[7] parked lanes
-- ARGV[1] prefix of the tenants' ready-queue keys (+ tenant id), ARGV[2] entries asked for,
-- ARGV[3] now (ms), ARGV[4] level, ARGV[5] most lanes to look at, ARGV[6 ..] the queues this
-- worker serves (none: every queue)
-- Returns {queue, tenant id, the lane's mark count}, or false when no lane is ready.
local count, looks = tonumber(ARGV[2]), tonumber(ARGV[5])
local serves = nil
if #ARGV > 5 then
  serves = {}
  for i = 6, #ARGV do
    serves[ARGV[i]] = true
  end
end
local tenants = redis.call('ZRANGE', KEYS[1], 0, looks - 1, 'WITHSCORES')
for i = 1, #tenants, 2 do
  local tenant, tenant_pass = tenants[i], tonumber(tenants[i + 1])
  local ready = ARGV[1] .. tenant
  local queues = redis.call('ZRANGE', ready, 0, looks - 1, 'WITHSCORES')
  for j = 1, #queues, 2 do
    local queue, queue_pass = queues[j], tonumber(queues[j + 1])
    looks = looks - 1
    local member = ARGV[4] .. '|' .. tenant .. '|' .. queue
    local parked = tonumber(redis.call('ZSCORE', KEYS[7], member))
    if parked and parked <= tonumber(ARGV[3]) then
      redis.call('ZREM', KEYS[7], member)
      parked = nil
    end
    if redis.call('SISMEMBER', KEYS[5], queue) == 1 then
      redis.call('ZREM', ready, queue)
    elseif not parked and (serves == nil or serves[queue]) then
      local lane = tenant .. '|' .. queue
      -- A pass left behind the virtual time (a tenant or queue that could not be served a
      -- while) starts from it: no credit for turns it did not take. The virtual times move
      -- only with a worker serving every queue that takes the first tenant (and that tenant's
      -- first queue) in order: one serving some queues may pick far down the order.
      local vt = tonumber(redis.call('HGET', KEYS[3], 'vt')) or 0
      local tenant_vt = tonumber(redis.call('HGET', KEYS[3], 'vt:' .. tenant)) or 0
      tenant_pass = math.max(tenant_pass, vt)
      queue_pass = math.max(queue_pass, tenant_vt)
      if serves == nil and i == 1 then
        vt = tenant_pass
      end
      if serves == nil and j == 1 then
        tenant_vt = queue_pass
      end
      local tenant_weight = tonumber(redis.call('HGET', KEYS[4], 't:' .. tenant)) or 1
      local queue_weight = tonumber(redis.call('HGET', KEYS[4], 'q:' .. queue)) or 1
      local next_tenant_pass = tenant_pass + count / tenant_weight
      local next_queue_pass = queue_pass + count / queue_weight
      redis.call('ZADD', KEYS[1], next_tenant_pass, tenant)
      redis.call('ZADD', ready, next_queue_pass, queue)
      redis.call('HSET', KEYS[3], 'vt', vt, 't:' .. tenant, next_tenant_pass,
        'vt:' .. tenant, tenant_vt, 'q:' .. lane, next_queue_pass)
      redis.call('ZADD', KEYS[6], ARGV[3], member)
      return {queue, tenant, redis.call('HGET', KEYS[2], lane) or '0'}
    end
    if looks <= 0 then
      return false
    end
  end
  if redis.call('ZCARD', ready) == 0 then
    redis.call('ZREM', KEYS[1], tenant)
  end
end
return false
