-- Note a callback delivery attempt, in one step: its state on the task record (only while
-- the record exists: an expired one is never resurrected), the queue's count of attempts by
-- result, and the callback's due time (removed when settled: delivered or given up on).
-- KEYS[1] task record, KEYS[2] queue stats, KEYS[3] callbacks-due set
-- ARGV[1] task id, ARGV[2] the statistic to count, ARGV[3] when the callback must be settled
-- by (ms; '' when settled now), ARGV[4 ..] record field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
end
redis.call('HINCRBYFLOAT', KEYS[2], ARGV[2], 1)
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
end
return 1
