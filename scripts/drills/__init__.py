"""Fault drills of queue-service: `python -m scripts.drills [drill ...] [--quick]` (see
`__main__`). `rig` sets up one drill, `load` puts its jobs, `receiver` records its callbacks,
`check` accounts for them; `workers`, `outages` and `upstream` hold the drills themselves."""
