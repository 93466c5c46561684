-- Record a task's outcome (the first outcome wins), then acknowledge and delete its
-- stream entry. The entry is acknowledged in the same step that stores the result, so a
-- crash can never lose a result that was computed nor drop an entry whose result was not.
-- A callback job is also put on its queue's callbacks-due set, so that its callback is sent
-- even if this worker dies right after this script (a sweeper re-sends what stays due).
-- The queue's statistics are counted in the same step, and a task followed upstream (see
-- follow.lua) leaves the followed set.
-- KEYS[1] task record, KEYS[2] level stream, KEYS[3] callbacks-due set, KEYS[4] queue stats,
-- KEYS[5] the queue's followed set
-- ARGV[1] entry id, ARGV[2] consumer group, ARGV[3] retention (ms), ARGV[4] event channel,
-- ARGV[5] completion event payload, ARGV[6] callback due time (ms; 0: no callback),
-- ARGV[7] task id, ARGV[8] n, ARGV[9 .. 8+2n] outcome field/value pairs,
-- then statistic/increment pairs
redis.call('XACK', KEYS[2], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], 'upstream_key')  -- a caller's own key lives only while the job runs
redis.call('ZREM', KEYS[5], ARGV[7])
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then
  return 0
end
local n = tonumber(ARGV[8])
redis.call('HSET', KEYS[1], unpack(ARGV, 9, 8 + 2 * n))
for i = 9 + 2 * n, #ARGV, 2 do
  redis.call('HINCRBYFLOAT', KEYS[4], ARGV[i], ARGV[i + 1])
end
if ARGV[6] ~= '0' then
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[7])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
