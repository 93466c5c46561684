-- Cancel a task that has not finished: it ends `cancelled`, a queued entry is removed
-- from its stream, and workers are told (a running job is stopped by its worker).
-- Returns the status the task had, or false when it does not exist.
-- KEYS[1] task record, KEYS[2] level stream
-- ARGV[1] now (ms), ARGV[2] retention (ms), ARGV[3] event channel, ARGV[4] event payload,
-- ARGV[5] cancel channel, ARGV[6] task id, ARGV[7] result body, ARGV[8] its status code
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return false
end
if status ~= 'queued' and status ~= 'running' then
  return status
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1],
  'status_code', ARGV[8], 'content_type', 'application/json', 'result', ARGV[7])
redis.call('HDEL', KEYS[1], 'upstream_key')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if status == 'queued' then
  redis.call('XDEL', KEYS[2], redis.call('HGET', KEYS[1], 'entry'))
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return status
