-- Create a registered queue's lanes and their consumer group if they are missing (Redis
-- lost them), but never for a queue that is not registered (any more): a queue removed as
-- idle stays removed, however late a worker or a stats read comes to it.
-- KEYS[1] queue meta, KEYS[2 ..] the queue's lane streams
-- ARGV[1] consumer group
-- Returns 1 when the queue is registered (its lanes exist now), else 0.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for i = 2, #KEYS do
  redis.pcall('XGROUP', 'CREATE', KEYS[i], ARGV[1], '0', 'MKSTREAM')  -- BUSYGROUP: it exists
end
return 1
