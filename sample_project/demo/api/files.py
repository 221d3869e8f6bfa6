"""Uploads, binary and streamed replies: show that replays keep bodies byte-exact.

No auth: these routes touch no data, so they also serve the anonymous
(`X-Async-Request: <channel>`) examples.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, UploadFile
from fastapi.responses import Response, StreamingResponse

from demo.api.schemas import UploadOut

router = APIRouter(tags=["files"])

_CHUNK = 64 * 1024
_PATTERN = bytes(range(256))


@router.post("/uploads/", response_model=UploadOut)
async def upload(file: UploadFile) -> UploadOut:
    """Hash a multipart file upload and report its name, size and SHA-256."""
    digest, size = hashlib.sha256(), 0
    while chunk := await file.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return UploadOut(filename=file.filename, size=size, sha256=digest.hexdigest())


def binary_payload(n: int) -> bytes:
    """Return `n` bytes cycling 0x00..0xff, so any byte lost or changed is easy to spot."""
    return (_PATTERN * (n // len(_PATTERN) + 1))[:n]


@router.get("/binary/")
async def binary(n: Annotated[int, Query(ge=0, le=10 * 1024 * 1024)] = 1000) -> Response:
    """Return `binary_payload(n)` as `application/octet-stream`."""
    return Response(binary_payload(n), media_type="application/octet-stream")


@router.get("/stream/")
async def stream(
    chunks: Annotated[int, Query(ge=1, le=1000)] = 5,
    delay: Annotated[float, Query(ge=0, le=5)] = 0.05,
) -> StreamingResponse:
    """Stream `chunks` lines `chunk <i>`, pausing `delay` seconds between them."""

    async def lines() -> AsyncIterator[bytes]:
        for i in range(chunks):
            if i:
                await asyncio.sleep(delay)
            yield f"chunk {i}\n".encode()

    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8")
