"""The README's code blocks work as printed, against a live API, worker and mock upstream
(only the address changes: the README's 127.0.0.1:8080 becomes this test's API)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from arq.worker import Worker

README = (Path(__file__).parent.parent / "README.md").read_text()
README_API = "http://127.0.0.1:8080"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


async def shell(script: str, cwd: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=cwd, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out
    return out.decode()


async def test_the_python_client_example_runs(api: httpx.AsyncClient, worker: Worker) -> None:
    (example,) = blocks("python")
    code = example.replace(README_API, str(api.base_url))
    printed = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(printed):
            exec(code, {})

    await asyncio.to_thread(run)
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith("200 ")  # the blocking answer, then one line per event
    assert len(lines) > 2
    assert "'finish_reason': 'stop'" in lines[-1]


@pytest.mark.skipif(sys.platform != "linux", reason="bash and curl")
async def test_the_curl_examples_run(
    api: httpx.AsyncClient, worker: Worker, tmp_path: Path
) -> None:
    curls = [block for block in blocks("bash") if block.startswith("curl")]
    blocking, streaming, callback = (
        block.replace(README_API, str(api.base_url)) for block in curls
    )
    answer = orjson.loads(await shell(blocking, tmp_path))
    assert answer["object"] == "chat.completion"
    assert (await shell(streaming, tmp_path)).rstrip().endswith("data: [DONE]")
    envelope = orjson.loads(await shell(callback, tmp_path))
    assert envelope["code"] == 200
    assert envelope["data"].startswith("TASK-")


async def test_the_batch_submit_example_runs(
    api: httpx.AsyncClient, worker: Worker, tmp_path: Path
) -> None:
    (example,) = [block for block in blocks("bash") if "queue-service submit" in block]
    bin_dir = Path(sys.executable).parent
    script = example.replace(".venv/bin/", f"{bin_dir}/").rstrip() + f" --api {api.base_url}"
    await shell(script, tmp_path)
    results = [
        orjson.loads(line) for line in (tmp_path / "results.jsonl").read_bytes().splitlines()
    ]
    assert sorted(result["custom_id"] for result in results) == ["a", "b"]
    assert {result["status"] for result in results} == {"succeeded"}
