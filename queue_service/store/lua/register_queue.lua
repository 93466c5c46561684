-- Assign a queue name its small integer id, once: later calls return the same id.
-- KEYS[1] name->id hash, KEYS[2] id->name hash, KEYS[3] id counter
-- ARGV[1] queue name, ARGV[2] channel announcing new queues to workers
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then
  return tonumber(id)
end
id = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('HSET', KEYS[2], id, ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return id
