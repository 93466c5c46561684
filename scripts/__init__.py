"""Developer tools of queue-service, run from the repository root with `python -m`:
`scripts.bench` (benchmarks), `scripts.drills` (fault drills) and `scripts.fuzz_api`."""
