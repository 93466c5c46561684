-- Follow a task that its upstream runs as a task of its own (Midjourney, Suno): record what
-- the upstream said of it and when to look again. The first call, made the moment the
-- upstream's submit answers, also acknowledges and deletes the task's stream entry in the
-- same step that stores the upstream task id: from then on the job holds neither a stream
-- entry nor a worker slot, and a worker that dies loses nothing (any follower polls it next).
-- Once this step has run the submit is not sent again: no entry is left to redeliver,
-- requeue.lua does not requeue a task with an upstream task id, and a worker that starts
-- one anyway hands it over again instead of submitting. A worker that dies between the
-- upstream's answer and this step leaves its entry pending: that job is submitted again.
-- A task that has ended meanwhile (cancelled, timed out, finished) is only taken off the
-- followed set (its entry still acknowledged).
-- KEYS[1] task record, KEYS[2] level stream, KEYS[3] the queue's followed set
-- ARGV[1] task id, ARGV[2] when to look next (ms), ARGV[3] stream entry to acknowledge ('':
-- none), ARGV[4] consumer group, ARGV[5] event channel, ARGV[6] event to publish ('': none),
-- ARGV[7 ..] field/value pairs to set on the task
-- Returns 1 while followed, 0 when the task has ended or is gone.
if ARGV[3] ~= '' then
  redis.call('XACK', KEYS[2], ARGV[4], ARGV[3])
  redis.call('XDEL', KEYS[2], ARGV[3])
end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
if #ARGV > 6 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 7))
end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
if ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
return 1
