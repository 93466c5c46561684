-- Atomically store a task record and enqueue its id on its lane (the level stream of its
-- tenant on the queue; created with its consumer group on the tenant's first put there).
-- The caller then marks the lane ready for the scheduler (mark.lua).
-- KEYS[1] task record, KEYS[2] lane stream, KEYS[3] queue stats, KEYS[4] queue's tenants,
-- KEYS[5] queue meta, KEYS[6] (optional) the idempotency key's record
-- ARGV[1] task id, ARGV[2] record ttl (ms), ARGV[3] most jobs waiting on the stream (0: no
-- limit), ARGV[4] consumer group, ARGV[5] statistic to count, ARGV[6] tenant, ARGV[7] the
-- queue id the task id carries, ARGV[8] when the record expires (ms), ARGV[9] the request's
-- fingerprint (with KEYS[6]), ARGV[10..] record field/value pairs
-- Returns the entry id, or false when the stream already holds its most waiting jobs.
-- Errors: STALE when the queue's registered id is not ARGV[7] (the registry was lost or
-- changed: register again), DUPLICATE when the task id exists, IDEMPOTENT <fingerprint>
-- <task id> when the idempotency key was used already (nothing is stored).
if redis.call('HGET', KEYS[5], 'id') ~= ARGV[7] then
  return redis.error_reply('STALE queue id ' .. ARGV[7])
end
if KEYS[6] then
  local seen = redis.call('GET', KEYS[6])
  if seen then
    return redis.error_reply('IDEMPOTENT ' .. seen)
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('DUPLICATE task id ' .. ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[4], '0', 'MKSTREAM')
end
local most = tonumber(ARGV[3])
if most > 0 then
  local pending = redis.call('XPENDING', KEYS[2], ARGV[4])[1]
  if redis.call('XLEN', KEYS[2]) - pending >= most then
    return false
  end
end
local entry = redis.call('XADD', KEYS[2], '*', 'task', ARGV[1])
redis.call('HSET', KEYS[1], 'entry', entry, unpack(ARGV, 10))
redis.call('HINCRBYFLOAT', KEYS[3], ARGV[5], 1)
redis.call('SADD', KEYS[4], ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if KEYS[6] then
  redis.call('SET', KEYS[6], ARGV[9] .. ' ' .. ARGV[1], 'PX', ARGV[2])
end
if (tonumber(redis.call('HGET', KEYS[5], 'expires_at')) or 0) < tonumber(ARGV[8]) then
  redis.call('HSET', KEYS[5], 'expires_at', ARGV[8])
end
return entry
