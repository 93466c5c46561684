"""Files that jobs take (audio to transcribe, images to edit), three ways in: parts of a
multipart put (or of an SDK's multipart call), a file uploaded to `/v1/files` before and
named as `{"$file": "<id>"}`, or small files as `{"$base64": "...", "filename", "content_type"}`
in `data`. All are stored (the first and last for as long as the job's record lives) and the
job's `data` names each as `{"$file": "<id>"}`: file bytes never ride in a stream entry."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from queue_service.endpoints import FILE_ENDPOINTS
from queue_service.errors import BadRequest, PayloadTooLarge
from queue_service.models import FILE_REF, PutRequest, file_ref

from .state import AppState
from .uploads import pieces

BASE64 = "$base64"
MOST_FILES = 16
MOST_JOB_BYTES = 100 * 1024 * 1024
"""All the files of one job together: the worker reads them to send them upstream."""
REQUIRED = {
    "/v1/audio/transcriptions": "file",
    "/v1/audio/translations": "file",
    "/v1/images/edits": "image",
    "/v1/images/variations": "image",
}


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def _one(content: bytes) -> AsyncIterator[bytes]:
    yield content


async def store_form(
    state: AppState, tenant: str, endpoint: str, form: FormData, ttl_s: int, skip: str = ""
) -> dict[str, Any]:
    """The form as a job's `data`: text fields as they are, each file stored and named."""
    limit = FILE_ENDPOINTS.get(endpoint)
    data: dict[str, Any] = {}
    files = 0
    for name, value in form.multi_items():
        if name == skip:
            continue
        if isinstance(value, UploadFile):
            if limit is None:
                raise BadRequest(f"{endpoint} takes no files")
            files += 1
            if files > MOST_FILES:
                raise BadRequest(f"at most {MOST_FILES} files a job")
            stored = await state.store.files.create(
                tenant,
                value.filename or name,
                "user_data",
                pieces(value),
                limit,
                content_type=value.content_type or "application/octet-stream",
                ttl_s=ttl_s,
            )
            item: Any = {FILE_REF: stored.id}
        else:
            item = value
        key = name.removesuffix("[]")
        if key in data:
            existing = data[key]
            data[key] = [*existing, item] if isinstance(existing, list) else [existing, item]
        else:
            data[key] = [item] if name.endswith("[]") else item
    return data


async def attach(state: AppState, tenant: str, job: PutRequest, ttl_s: int) -> PutRequest:
    """The job with every file of its `data` stored and named `{"$file": id}` (files named
    by id must be the tenant's own; base64 ones are stored now)."""
    limit = FILE_ENDPOINTS.get(job.endpoint)
    data = dict(job.data)
    for name, value in job.data.items():
        items = value if isinstance(value, list) else [value]
        kept = [await _attached(state, tenant, job, name, item, limit, ttl_s) for item in items]
        data[name] = kept if isinstance(value, list) else kept[0]
    required = REQUIRED.get(job.endpoint)
    if required is not None and not _names_files(data.get(required)):
        raise BadRequest(f"data.{required}: {job.endpoint} needs a file here")
    total = 0
    for value in data.values():
        for item in value if isinstance(value, list) else [value]:
            file_id = file_ref(item)
            found = file_id and await state.store.files.get(file_id, tenant)
            total += found.bytes if found else 0
    if total > MOST_JOB_BYTES:  # the worker holds a job's files while it sends them
        raise PayloadTooLarge(f"a job's files may total {MOST_JOB_BYTES} bytes, not {total}")
    return job.model_copy(update={"data": data})


def _names_files(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(file_ref(item) is not None for item in items)


async def _attached(
    state: AppState,
    tenant: str,
    job: PutRequest,
    name: str,
    item: Any,
    limit: int | None,
    ttl_s: int,
) -> Any:
    file_id = file_ref(item)
    inline = isinstance(item, dict) and BASE64 in item
    if file_id is None and not inline:
        return item
    if limit is None:
        raise BadRequest(f"data.{name}: {job.endpoint} takes no files")
    if file_id is not None:
        found = await state.store.files.get(file_id, tenant)
        if found is None:
            raise BadRequest(f"data.{name}: no file {file_id} of yours")
        if found.bytes > limit:
            raise PayloadTooLarge(f"data.{name}: {job.endpoint} takes files up to {limit} bytes")
        return item
    try:
        content = base64.b64decode(item[BASE64], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise BadRequest(f"data.{name}.{BASE64} is not valid base64") from None
    stored = await state.store.files.create(
        tenant,
        str(item.get("filename") or name),
        "user_data",
        _one(content),
        limit,
        content_type=str(item.get("content_type") or "application/octet-stream"),
        ttl_s=ttl_s,
    )
    return {FILE_REF: stored.id}
