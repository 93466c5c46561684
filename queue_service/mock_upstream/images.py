"""OpenAI image generation: small solid-colour PNGs, as `b64_json` or a `url` on the mock."""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import time
import zlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .dialect import Answer, Call
from .oneshot import OneShot, json_answer

SIDE = 8
"""Pixels per side of every image, whatever `size` asks: real PNGs, kept tiny."""
_COLOUR = re.compile(r"[0-9a-f]{6}")
_MAX_IMAGES = 10


def png(colour: str) -> bytes:
    """A valid SIDE x SIDE RGB PNG filled with `colour` (six hex digits)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", SIDE, SIDE, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    row = b"\x00" + bytes.fromhex(colour) * SIDE  # filter type 0, then the pixels
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * SIDE))
        + chunk(b"IEND", b"")
    )


def colour_of(prompt: str, index: int) -> str:
    """The colour of image `index` for `prompt`: deterministic, different per image."""
    return hashlib.sha256(f"{index}:{prompt}".encode()).hexdigest()[:6]


class ImagesApi(OneShot):
    path = "/v1/images/generations"
    id_prefix = "img"

    def problem(self, body: dict[str, Any]) -> str | None:
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return "`prompt` must be a non-empty string."
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= _MAX_IMAGES:
            return f"`n` must be an integer from 1 to {_MAX_IMAGES}."
        if body.get("response_format", "url") not in ("url", "b64_json"):
            return "`response_format` must be url or b64_json."
        return None

    def answer(self, call: Call) -> Answer:
        prompt = call.body["prompt"]
        inline = call.body.get("response_format") == "b64_json"
        data = []
        for index in range(call.body.get("n", 1)):
            colour = colour_of(prompt, index)
            if inline:
                data.append({"b64_json": base64.b64encode(png(colour)).decode()})
            else:
                data.append({"url": f"{call.base_url}_mock/images/{colour}.png"})
        return json_answer({"created": int(time.time()), "data": data})


async def _image_file(request: Request) -> Response:
    colour = request.path_params["colour"]
    if not _COLOUR.fullmatch(colour):
        return Response(b"not found", 404)
    return Response(png(colour), media_type="image/png")


IMAGE_FILES = Route("/_mock/images/{colour}.png", _image_file, methods=["GET"])
"""Where `url` answers point: the image of that colour."""
