-- Stop a task that has not finished: it ends `cancelled` (a cancel, or its waiting client
-- left) or `timeout` (its waiting client's timeout passed). A queued entry is removed from
-- its stream, workers are told (a running job is stopped by its worker), the waiter gets the
-- completion event and the queue's statistics count the end. A callback job stopped this
-- way sends no callback: its callback state says so. A task followed upstream leaves the
-- followed set (the upstream has no cancel: its own task runs on there).
-- KEYS[1] task record, KEYS[2] level stream, KEYS[3] queue stats, KEYS[4] the queue's
-- followed set
-- ARGV[1] now (ms), ARGV[2] retention (ms), ARGV[3] event channel, ARGV[4] event payload,
-- ARGV[5] cancel channel, ARGV[6] task id, ARGV[7] result body, ARGV[8] its status code,
-- ARGV[9] the status it ends with, ARGV[10] the statistic to count, ARGV[11] the callback
-- state of a callback job
-- Returns the status the task had, or false when it does not exist.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return false
end
if status ~= 'queued' and status ~= 'running' then
  return status
end
redis.call('HSET', KEYS[1], 'status', ARGV[9], 'finished_at', ARGV[1],
  'status_code', ARGV[8], 'content_type', 'application/json', 'result', ARGV[7])
if redis.call('HGET', KEYS[1], 'mode') == 'callback' then
  redis.call('HSET', KEYS[1], 'callback_status', ARGV[11])
end
redis.call('HDEL', KEYS[1], 'upstream_key')
redis.call('ZREM', KEYS[4], ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if status == 'queued' then
  redis.call('XDEL', KEYS[2], redis.call('HGET', KEYS[1], 'entry'))
end
redis.call('HINCRBYFLOAT', KEYS[3], ARGV[10], 1)
redis.call('PUBLISH', ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return status
