"""Fuzz the live API against its own OpenAPI document with schemathesis.

    python -m scripts.fuzz_api [--max-examples N] [--api-key KEY]

Starts an API process, a worker and the mock upstream on loopback (a private key prefix on
the Redis of QUEUE_REDIS_URL, 127.0.0.1:6379, or an embedded one), installs schemathesis
into the running virtualenv if it is missing, runs every check (no 5xx, responses that match
their schema, ...) and exits with schemathesis's status.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys

from scripts.bench.lib import BIN, MockUpstream, Stack, redis_for_bench


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.fuzz_api", description=__doc__)
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--api-key", default="fuzz-key-123456")
    args = parser.parse_args()
    if importlib.util.find_spec("schemathesis") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "schemathesis"], check=True)
    with redis_for_bench() as redis_url, MockUpstream() as upstream:
        stack = Stack(upstream.url, env_extra={"QUEUE_API_KEYS": f"fuzz:{args.api_key}"})
        stack.start(redis_url)
        try:
            command = [
                str(BIN / "schemathesis"),
                "run",
                f"{stack.api_url}/openapi.json",
                "--checks",
                "all",
                # A schema-valid callback_url may still be refused (its host does not resolve,
                # or resolves to an inner address): not a contract breach.
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                str(args.max_examples),
                "--header",
                f"Authorization: Bearer {args.api_key}",
                "--request-timeout",
                "30",
            ]
            print("$", " ".join(command), flush=True)
            return subprocess.run(command, check=False).returncode
        finally:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
