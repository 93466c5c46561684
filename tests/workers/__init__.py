"""Tests of the worker modules on their own (the executor, upstream calls, SSE parsing)."""
