-- A worker takes a task it read from a stream: mark it running unless it is finished,
-- cancelled, expired or past its deadline. Returns the record as a flat field/value list
-- (before marking it running when it must not run), or false when the record is gone.
-- KEYS[1] task record
-- ARGV[1] now (ms), ARGV[2] worker name
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return false
end
if status == 'queued' or status == 'running' then
  local deadline = tonumber(redis.call('HGET', KEYS[1], 'deadline'))
  if deadline > tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'worker', ARGV[2])
    redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  end
end
return redis.call('HGETALL', KEYS[1])
