-- Record a task's outcome (the first outcome wins), then acknowledge and delete its
-- stream entry. The entry is acknowledged in the same step that stores the result, so a
-- crash can never lose a result that was computed nor drop an entry whose result was not.
-- KEYS[1] task record, KEYS[2] level stream
-- ARGV[1] entry id, ARGV[2] consumer group, ARGV[3] retention (ms), ARGV[4] event channel,
-- ARGV[5] completion event payload, ARGV[6..] outcome field/value pairs (status first)
redis.call('XACK', KEYS[2], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
