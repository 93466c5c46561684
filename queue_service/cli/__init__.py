"""The `queue-service` command (main.py): api, worker, dev, mock-upstream, the operators'
stats/workers/check (operator.py), batch submit (submit.py) and dead letters."""
