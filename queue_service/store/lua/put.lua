-- Atomically store a task record and enqueue its id on its level stream.
-- KEYS[1] task record, KEYS[2] level stream, KEYS[3] queue stats, KEYS[4] queue's tenants
-- ARGV[1] task id, ARGV[2] record ttl (ms), ARGV[3] most jobs waiting on the stream (0: no
-- limit), ARGV[4] consumer group, ARGV[5] statistic to count, ARGV[6] tenant,
-- ARGV[7..] record field/value pairs
-- Returns the entry id, or false when the stream already holds its most waiting jobs.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('DUPLICATE task id ' .. ARGV[1])
end
local most = tonumber(ARGV[3])
if most > 0 then
  local pending = redis.call('XPENDING', KEYS[2], ARGV[4])[1]
  if redis.call('XLEN', KEYS[2]) - pending >= most then
    return false
  end
end
local entry = redis.call('XADD', KEYS[2], '*', 'task', ARGV[1])
redis.call('HSET', KEYS[1], 'entry', entry, unpack(ARGV, 7))
redis.call('HINCRBYFLOAT', KEYS[3], ARGV[5], 1)
redis.call('SADD', KEYS[4], ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return entry
