-- Set fields on a task record only while it exists (never resurrect an expired one).
-- KEYS[1] task record; ARGV field/value pairs
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
