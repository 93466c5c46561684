"""The README's code blocks work as printed, against a live API, worker and mock upstream
(only the address changes: the README's 127.0.0.1:8080 becomes this test's API)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
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


async def run_python(example: str, api: httpx.AsyncClient, cwd: Path) -> list[str]:
    """Run a README example in a thread (its own event loop); the lines it printed."""
    code = example.replace(README_API, str(api.base_url))
    printed = io.StringIO()

    def run() -> None:
        here = os.getcwd()
        os.chdir(cwd)
        try:
            with contextlib.redirect_stdout(printed):
                exec(code, {})
        finally:
            os.chdir(here)

    await asyncio.to_thread(run)
    return printed.getvalue().splitlines()


async def test_the_python_client_example_runs(
    api: httpx.AsyncClient, worker: Worker, tmp_path: Path
) -> None:
    example = next(block for block in blocks("python") if "QueueClient" in block)
    lines = await run_python(example, api, tmp_path)
    assert lines[0].startswith("200 ")  # the blocking answer, then one line per event
    assert len(lines) > 2
    assert "'finish_reason': 'stop'" in lines[-1]


async def test_the_sdk_examples_run(api: httpx.AsyncClient, worker: Worker, tmp_path: Path) -> None:
    openai_example, anthropic_example, batch_example = (
        block for block in blocks("python") if "QueueClient" not in block
    )
    first, streamed, models = await run_python(openai_example, api, tmp_path)
    task_id, _, content = first.partition(" ")
    assert task_id.startswith("TASK-")
    assert content
    assert streamed
    assert "deepseek-r1" in models
    (text,) = await run_python(anthropic_example, api, tmp_path)
    assert text
    output = await run_python(batch_example, api, tmp_path)
    rows = [orjson.loads(row) for row in output if row]
    assert sorted(row["custom_id"] for row in rows) == [f"request-{n}" for n in range(3)]


@pytest.mark.skipif(sys.platform != "linux", reason="bash and curl")
async def test_the_curl_examples_run(
    api: httpx.AsyncClient, worker: Worker, tmp_path: Path
) -> None:
    here = str(api.base_url)
    curls = [
        block.replace(README_API, here) for block in blocks("bash") if block.startswith("curl")
    ]
    blocking, streaming, callback = (block for block in curls if " -F " not in block)
    (multipart,) = (block for block in curls if " -F " in block)
    transcript = orjson.loads(await shell(multipart, Path(__file__).parent.parent))
    assert "README.md" in transcript["text"]
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
