"""Multipart bodies: the declared length is checked before the parser spools parts to disk,
and a spooled part goes on to the store one piece at a time."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile
from starlette.requests import Request

from queue_service.errors import LengthRequired, PayloadTooLarge

READ_BYTES = 1024 * 1024


def check_length(request: Request, limit: int, *, framing: int = 0) -> None:
    """The body must declare a length of at most `limit` bytes (plus `framing` for the
    multipart boundaries and headers around a file of up to `limit`)."""
    declared = request.headers.get("content-length", "")
    if not re.fullmatch(r"[0-9]{1,12}", declared):
        raise LengthRequired("a multipart request needs a Content-Length header")
    if int(declared) > limit + framing:
        raise PayloadTooLarge(f"the request is larger than {limit} bytes")


async def pieces(upload: UploadFile) -> AsyncIterator[bytes]:
    """A spooled part's content, a megabyte at a time."""
    while piece := await upload.read(READ_BYTES):
        yield piece
