-- Try to take a slot of a concurrency limit shared by every worker, in priority order.
-- Leases expire unless renewed, so a worker that dies frees its slots within the lease TTL.
-- Waiters are served lowest score first (online before offline, then oldest); a waiter that
-- stops asking is forgotten after its own TTL.
-- KEYS[1] leases, KEYS[2] waiters, KEYS[3] waiter expiry
-- ARGV[1] now (ms), ARGV[2] limit size, ARGV[3] lease id, ARGV[4] waiter score,
-- ARGV[5] lease ttl (ms), ARGV[6] waiter ttl (ms)
-- Returns 1 when the slot is taken, else 0.
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[3], unpack(gone))
end
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[3])
local rank = redis.call('ZRANK', KEYS[2], ARGV[3])
if free > 0 and rank < free then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[3])
  return 1
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[3])
return 0
