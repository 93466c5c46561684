"""OpenAI's Files API through the official SDK: upload, list, retrieve, content, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from queue_service.api.app import create_app
from queue_service.settings import Settings
from tests.servers import serve

KEYS = """
[[key]]
key = "alice-key-1"
tenant = "alice"

[[key]]
key = "bob-key-22"
tenant = "bob"
"""


@pytest.fixture
async def keyed(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    keyed = settings.model_copy(update={"api_keys_file": str(path), "max_file_bytes": 3_000_000})
    async with serve(create_app(keyed)) as url:
        yield f"{url}/v1"


def sdk(base_url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0)


async def test_a_file_goes_in_and_comes_back_whole(keyed: str, tmp_path: Path) -> None:
    content = b"".join(b'{"custom_id": "%d", "body": {}}\n' % n for n in range(80_000))
    assert len(content) > 2 * 1024 * 1024  # more than two stored pieces
    path = tmp_path / "input.jsonl"
    path.write_bytes(content)
    async with sdk(keyed, "alice-key-1") as alice:
        with path.open("rb") as file:
            created = await alice.files.create(file=file, purpose="batch")
        assert (created.bytes, created.filename, created.purpose) == (
            len(content),
            "input.jsonl",
            "batch",
        )
        assert (await alice.files.retrieve(created.id)).id == created.id
        assert [f.id async for f in alice.files.list()] == [created.id]
        assert (await alice.files.content(created.id)).content == content
        deleted = await alice.files.delete(created.id)
        assert deleted.deleted
        with pytest.raises(openai.NotFoundError):
            await alice.files.retrieve(created.id)


async def test_a_file_is_its_tenants_alone(keyed: str) -> None:
    async with sdk(keyed, "alice-key-1") as alice, sdk(keyed, "bob-key-22") as bob:
        created = await alice.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
        with pytest.raises(openai.NotFoundError):
            await bob.files.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            await bob.files.content(created.id)
        assert [f.id async for f in bob.files.list()] == []


async def test_bad_uploads_are_refused_clearly(keyed: str) -> None:
    async with sdk(keyed, "alice-key-1") as alice:
        with pytest.raises(openai.BadRequestError, match="purpose"):
            await alice.files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
        with pytest.raises(openai.APIStatusError) as large:
            await alice.files.create(file=("big.jsonl", b"x" * 3_100_000), purpose="batch")
        assert large.value.status_code == 413
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{keyed}/files",
            data={"purpose": "batch"},
            headers={"authorization": "Bearer alice-key-1"},
            files={"other": ("a.jsonl", b"{}")},
        )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("a multipart field 'file'")


async def test_an_upload_without_a_length_is_refused_before_it_is_spooled(keyed: str) -> None:
    async def chunked() -> AsyncIterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--b--\r\n'

    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{keyed}/files",
            content=chunked(),
            headers={
                "authorization": "Bearer alice-key-1",
                "content-type": "multipart/form-data; boundary=b",
            },
        )
    assert response.status_code == 411
    assert "Content-Length" in response.json()["error"]["message"]
