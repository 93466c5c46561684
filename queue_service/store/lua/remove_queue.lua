-- Remove a queue that has been idle long enough: no job waiting or running, no callback
-- owed, no upstream task followed, and its last task record expired at least the idle time
-- ago. Atomic against a concurrent put: a put after this sees no meta and registers the
-- queue anew (STALE); a put by a tenant new to the queue (a lane the caller did not list)
-- makes the tenant count differ, and the queue stays.
-- KEYS[1] name->id hash, KEYS[2] id->name hash, KEYS[3] queue meta, KEYS[4] queue stats,
-- KEYS[5] queue's tenants, KEYS[6] callbacks-due set, KEYS[7] paused set, KEYS[8] followed
-- set, KEYS[9] set of the queues with followed tasks, KEYS[10 ..] the queue's lane streams
-- ARGV[1] queue name, ARGV[2] now (ms), ARGV[3] idle time (ms), ARGV[4] channel announcing
-- queue changes to workers, ARGV[5] how many tenants the lanes listed are of
-- Returns 1 when removed, 0 when the queue is in use, paused (an operator's choice to keep),
-- or gone already.
local name = ARGV[1]
if redis.call('SISMEMBER', KEYS[7], name) == 1 then
  return 0
end
local expires_at = tonumber(redis.call('HGET', KEYS[3], 'expires_at')) or 0
if expires_at + tonumber(ARGV[3]) > tonumber(ARGV[2]) then
  return 0
end
if redis.call('SCARD', KEYS[5]) ~= tonumber(ARGV[5]) then
  return 0
end
for i = 10, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 and redis.call('XLEN', KEYS[i]) > 0 then
    return 0
  end
end
if redis.call('ZCARD', KEYS[6]) > 0 or redis.call('ZCARD', KEYS[8]) > 0 then
  return 0
end
local id = redis.call('HGET', KEYS[1], name)
if id and redis.call('HGET', KEYS[2], id) == name then
  redis.call('HDEL', KEYS[2], id)
end
redis.call('HDEL', KEYS[1], name)
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[8])
for i = 10, #KEYS do
  redis.call('DEL', KEYS[i])
end
redis.call('SREM', KEYS[9], name)
redis.call('PUBLISH', ARGV[4], name)
return 1
