-- Register a queue: its small integer id (kept when it has one), its level streams with the
-- consumer group, and its id in its own slot (`meta`) for puts to check.
-- `preferred` is the id a process had cached before the registry was lost: it is taken
-- again when free, so that process's task ids stay valid.
-- KEYS[1] name->id hash, KEYS[2] id->name hash, KEYS[3] id counter, KEYS[4] queue meta,
-- KEYS[5] level 0 stream, KEYS[6] level 1 stream
-- ARGV[1] queue name, ARGV[2] channel announcing new queues to workers, ARGV[3] consumer
-- group, ARGV[4] preferred id (0: none), ARGV[5] most queues registered (0: no limit)
-- Returns the queue's id, or an error TOO_MANY_QUEUES when a new queue would pass the limit.
local name, preferred, most = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5])
local id = redis.call('HGET', KEYS[1], name)
if not id or redis.call('HGET', KEYS[2], id) ~= name then
  if most > 0 and not id and redis.call('HLEN', KEYS[1]) >= most then
    return redis.error_reply('TOO_MANY_QUEUES ' .. most)
  end
  local holder = preferred > 0 and redis.call('HGET', KEYS[2], preferred)
  if preferred > 0 and (not holder or holder == name) then
    id = preferred
    redis.call('HSET', KEYS[2], id, name)
    if (tonumber(redis.call('GET', KEYS[3])) or 0) < id then
      redis.call('SET', KEYS[3], id)
    end
  else
    repeat
      id = redis.call('INCR', KEYS[3])
    until redis.call('HSETNX', KEYS[2], id, name) == 1
  end
  redis.call('HSET', KEYS[1], name, id)
  redis.call('PUBLISH', ARGV[2], name)
end
for i = 5, 6 do
  redis.pcall('XGROUP', 'CREATE', KEYS[i], ARGV[3], '0', 'MKSTREAM')  -- BUSYGROUP: it exists
end
redis.call('HSET', KEYS[4], 'id', id)
return tonumber(id)
