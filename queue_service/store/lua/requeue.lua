-- Hand a job back to the queue at once (a worker shutting down): a fresh stream entry for
-- the task, the old one acknowledged and deleted. A finished task is only acknowledged, and
-- so is one whose upstream task id is stored (a task API's submit was answered: it is
-- followed, see follow.lua; a fresh entry would submit it a second time).
-- The caller then marks the lane ready for the scheduler (mark.lua).
-- KEYS[1] task record, KEYS[2] lane stream
-- ARGV[1] old entry id, ARGV[2] consumer group, ARGV[3] task id
redis.call('XACK', KEYS[2], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then
  return false
end
if redis.call('HEXISTS', KEYS[1], 'upstream_task_id') == 1 then
  return false
end
local entry = redis.call('XADD', KEYS[2], '*', 'task', ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'queued', 'entry', entry)
return entry
