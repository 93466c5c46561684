"""Benchmarks of queue-service against baselines measured in the same run: `python -m
scripts.bench [scenario ...] [--quick]` (see `__main__`). One module per scenario, `lib` for
the pieces the drills and the fuzzer share, `rawhttp` for the low-cost load client."""
