-- Hold (or take) instance number N for this process: task ids carry it, so no two live
-- processes may share one. The lease expires unless renewed, so numbers of dead processes
-- come back, and a lease lost with Redis's data is taken again by its holder at once.
-- KEYS[1] the number's lease
-- ARGV[1] this process's token, ARGV[2] lease ttl (ms)
-- Returns 1 when this process holds the number, 0 when another does.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
