-- Atomically store a task record and enqueue its id on its level stream.
-- KEYS[1] task record, KEYS[2] level stream
-- ARGV[1] task id, ARGV[2] record ttl (ms), ARGV[3..] record field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('DUPLICATE task id ' .. ARGV[1])
end
local entry = redis.call('XADD', KEYS[2], '*', 'task', ARGV[1])
redis.call('HSET', KEYS[1], 'entry', entry, unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return entry
