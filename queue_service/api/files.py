"""OpenAI's Files API for batch files: upload (multipart), list, retrieve, content, delete.

An upload is spooled to disk by the multipart parser and goes to the store one piece at a
time; content goes back the same way, so a 200 MB file never sits whole in the API process.
A file is its tenant's: to any other key it does not exist.
"""

from __future__ import annotations

import re

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from queue_service.errors import BadRequest, TaskNotFound
from queue_service.store import FileRecord
from queue_service.store.batches import FINAL

from .batch_files import output_pieces
from .dialects import Dialect, speak
from .pages import listed, page_of
from .responses import OrjsonResponse
from .state import AppState
from .uploads import check_length, pieces

UPLOAD_PURPOSES = ("batch", "user_data")
"""Batch input files, and files jobs take (named in their data as `{"$file": id}`)."""
BATCH_FILE = re.compile(r"file-(?P<batch>batch_[0-9a-f]+)-(?P<kind>output|errors)")
MULTIPART_OVERHEAD = 64 * 1024


async def _admit(request: Request) -> tuple[AppState, str]:
    speak(request, Dialect.OPENAI)
    state: AppState = request.app.state.queue
    return state, (await state.admit(request)).tenant


async def upload(request: Request) -> Response:
    state, tenant = await _admit(request)
    limit = state.settings.max_file_bytes
    check_length(request, limit, framing=MULTIPART_OVERHEAD)
    async with request.form(max_files=1, max_fields=8) as form:
        file, purpose = form.get("file"), form.get("purpose")
        if not isinstance(file, UploadFile):
            raise BadRequest("a multipart field 'file' with the file is required")
        if purpose not in UPLOAD_PURPOSES:
            raise BadRequest(f"purpose must be 'batch' or 'user_data', not {purpose!r}")
        record = await state.store.files.create(
            tenant,
            file.filename or "upload",
            purpose,
            pieces(file),
            limit,
            content_type=file.content_type or "application/octet-stream",
        )
    return OrjsonResponse(record.view())


async def _found(request: Request) -> tuple[AppState, FileRecord]:
    state, tenant = await _admit(request)
    file_id: str = request.path_params["file_id"]
    record = await state.store.files.get(file_id, tenant)
    if record is None:
        record = await _batch_file(state, file_id, tenant)
    if record is None:
        raise TaskNotFound(f"no such file: {file_id}")
    return state, record


async def _batch_file(state: AppState, file_id: str, tenant: str) -> FileRecord | None:
    """A finished batch's output or error file (made from its jobs' records when read)."""
    match = BATCH_FILE.fullmatch(file_id)
    batch = match and await state.store.batches.load(match["batch"], tenant)
    if not match or batch is None or batch.status not in FINAL:
        return None
    size = await state.store.batches.file_size(batch.id, match["kind"])
    if size is None:  # measured once: an ended batch's files no longer change
        size = 0
        async for piece in output_pieces(state.store, batch, match["kind"]):
            size += len(piece)
        await state.store.batches.keep_file_size(batch.id, match["kind"], size)
    return FileRecord(
        file_id,
        tenant,
        f"{batch.id}_{match['kind']}.jsonl",
        "batch_output",
        size,
        batch.times.get("completed_at", batch.created_at),
        batch.expires_at + state.store.batches.retention_s,
    )


async def retrieve(request: Request) -> Response:
    _, record = await _found(request)
    return OrjsonResponse(record.view())


async def content(request: Request) -> Response:
    state, record = await _found(request)
    match = BATCH_FILE.fullmatch(record.id)
    if match:
        batch = await state.store.batches.load(match["batch"], record.tenant)
        assert batch is not None
        pieces = output_pieces(state.store, batch, match["kind"])
    else:
        pieces = state.store.files.pieces(record.id)
    return StreamingResponse(pieces, media_type="application/octet-stream")


async def delete(request: Request) -> Response:
    state, record = await _found(request)
    if BATCH_FILE.fullmatch(record.id):
        raise BadRequest("a batch's output and error files go with their batch")
    await state.store.files.delete(record.id, record.tenant)
    return OrjsonResponse({"id": record.id, "object": "file", "deleted": True})


async def listing(request: Request) -> Response:
    state, tenant = await _admit(request)
    purpose = request.query_params.get("purpose")
    files = {record.id: record for record in await state.store.files.list(tenant, purpose)}
    ids, more = page_of(request, list(files), after="after", default=10_000, most=10_000)
    return OrjsonResponse(listed([files[file_id].view() for file_id in ids], more))


ROUTES = [
    Route("/v1/files", upload, methods=["POST"]),
    Route("/v1/files", listing, methods=["GET"]),
    Route("/v1/files/{file_id}", retrieve, methods=["GET"]),
    Route("/v1/files/{file_id}", delete, methods=["DELETE"]),
    Route("/v1/files/{file_id}/content", content, methods=["GET"]),
]
