-- Move a batch to a new status only from one of the statuses it may come from, so that
-- processes racing on one batch (a cancel, a takeover, a finalization) never undo each other.
-- KEYS[1] the batch's hash
-- ARGV[1] the new status, ARGV[2] the statuses it may come from (comma-separated),
-- ARGV[3..] more field/value pairs to set with it
-- Returns 1 when the batch moved, 0 when its status was another (or it is gone).
local status = redis.call('HGET', KEYS[1], 'status')
if not status or not string.find(',' .. ARGV[2] .. ',', ',' .. status .. ',', 1, true) then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 3))
return 1
