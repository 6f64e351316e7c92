"""An uploaded image, checked before it costs anything: the bytes of a request (its body, or one multipart field
named ``file``), refused with an HTTP status and one line when they cannot be an image the model may read, else
cut to the model's input as ``predict`` cuts a file (:class:`~lightning_resnet.data.EvaluationView`)."""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..data import DECODE_ERRORS, EvaluationView
from ..data.decode import decode_problem

FILE_FIELD = "file"
"""The multipart field that carries the image."""
MAX_UPLOAD_MB = 20.0
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
"""Pillow's decompression-bomb limit (89,478,485 pixels): above it Pillow only warns, up to twice that."""

# Uploads above Pillow's limit are refused by the size check below, not left to Pillow's warning.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class BadUpload(Exception):
    """A request that cannot be classified: its HTTP ``status`` and the one line that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = int(MAX_UPLOAD_MB * 2**20)
    max_pixels: int = MAX_PIXELS


async def read_upload(request, limits: UploadLimits) -> bytes:
    """The image bytes of a Starlette ``request``: the body itself, or the multipart field :data:`FILE_FIELD`."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(int(declared), limits)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        data = await _multipart_file(request)
    elif content_type.startswith(("application/json", "text/")):  # curl's --data-binary says form-urlencoded
        raise BadUpload(415, f"a body of Content-Type {content_type.split(';')[0]} is not an image: send the image "
                             f"file's bytes as the body, or as the multipart field '{FILE_FIELD}'")
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_bytes:
                raise _too_large(size, limits)
            chunks.append(chunk)
        data = b"".join(chunks)
    if len(data) > limits.max_bytes:
        raise _too_large(len(data), limits)
    if not data:
        raise BadUpload(400, f"the request holds no image: send the image file's bytes as the body, or as the "
                             f"multipart field '{FILE_FIELD}'")
    return data


async def _multipart_file(request) -> bytes:
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException

    # python-multipart logs a warning for every malformed body, which the answer already says
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    try:
        form = await request.form(max_files=1, max_fields=1)
    except (MultiPartException, HTTPException) as error:  # Starlette turns the first into the second in an app
        detail = str(getattr(error, "detail", None) or getattr(error, "message", error))
        if "Too many files" in detail:
            raise BadUpload(400, f"the request holds more than one file: send one image as the multipart field "
                                 f"'{FILE_FIELD}'") from None
        raise BadUpload(400, f"unreadable multipart body ({detail.rstrip('.')}): send the image as the multipart "
                             f"field '{FILE_FIELD}', or as the body itself") from None
    try:
        unknown = [key for key in form.keys() if key != FILE_FIELD]
        if unknown:
            raise BadUpload(400, f"unknown field {unknown[0]!r}: send the image as the multipart field "
                                 f"'{FILE_FIELD}' (or as the body itself)")
        upload = form.get(FILE_FIELD)
        if not isinstance(upload, UploadFile):
            raise BadUpload(400, f"the multipart field '{FILE_FIELD}' must be a file, not text")
        return await upload.read()
    finally:
        await form.close()


def _too_large(size: int, limits: UploadLimits) -> BadUpload:
    return BadUpload(413, f"the upload has {size:,} bytes, over the limit of {limits.max_bytes:,} "
                          f"(--max_upload_mb {limits.max_bytes / 2**20:g})")


def prepare(data: bytes, view: EvaluationView, limits: UploadLimits, name: str = "the upload") -> np.ndarray:
    """The ``uint8`` crop (C, H, W) the model takes, from an upload's bytes; :class:`BadUpload` when they are
    not an image Pillow can read, are larger than ``limits.max_pixels``, or do not decode whole."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError as error:  # Pillow's own refusal, at twice its limit
        raise BadUpload(413, f"{name} is too large to decode ({decode_problem(error)})") from None
    except DECODE_ERRORS as error:
        raise BadUpload(415, f"{name} is not an image Pillow can read ({decode_problem(error)})") from None
    if width * height > limits.max_pixels:
        raise BadUpload(413, f"{name} is {width}x{height} = {width * height:,} pixels, over the limit of "
                             f"{limits.max_pixels:,} that guards against decompression bombs (--max_pixels)")
    try:
        return view(name, data=data).numpy()
    except DECODE_ERRORS as error:
        problem = decode_problem(error).removeprefix(f"cannot decode {name}: ")
        raise BadUpload(400, f"{name} could not be decoded whole ({problem}): was it cut short?") from None
