-- Claim the followed tasks due for a look: at most ARGV[3] of those due by ARGV[1], each
-- one's next look moved to that time + the lease. Followers in other workers skip a claimed
-- task, and a follower that dies mid-poll lets its claims come due again when the lease ends.
-- KEYS[1] the queue's followed set (task id -> when to look next, ms)
-- ARGV[1] due by (ms: now, or a little later to read tasks due soon in the same batch),
-- ARGV[2] lease (ms), ARGV[3] most to claim
-- Returns the claimed task ids.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local leased_until = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, task_id in ipairs(due) do
  redis.call('ZADD', KEYS[1], leased_until, task_id)
end
return due
