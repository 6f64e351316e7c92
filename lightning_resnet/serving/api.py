"""The HTTP service of ``serve``: LitServe around a trained model, with dynamic batching.

``POST /predict`` takes an image (the body, or the multipart field ``file``) and answers what the model's task says
of it (:mod:`lightning_resnet.tasks.verdicts`: the top classes with their calibrated probabilities and whether it is
unsure, or a multi-label model's labels and every label's probability), with the model's name and version;
LitServe's own ``GET /health`` and ``GET /info`` (the model's description: classes, preprocessing, decision) come
with it. Started with ``--embeddings`` (``embed``'s file), ``POST /similar?k=10`` takes an image the same way and
answers the ``k`` nearest images of the embedded folder (:mod:`lightning_resnet.inference.similarity`): the worker
answers every image's features beside its verdict, and the HTTP process searches the index.

The upload is read, checked and cut to the model's input in the HTTP process (:class:`ImageUploadSpec`,
a LitServe spec whose endpoint does that before the request is queued), so a bad request is
answered there with a 4xx and never joins a batch: LitServe fails every request of a batch when
one request's ``decode_request`` raises. The inference worker (:class:`ClassifierAPI`) stacks
the ``uint8`` crops of up to ``max_batch_size`` requests into one forward pass.
"""

from __future__ import annotations

import asyncio
import hmac
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import torch
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from litserve.specs.base import LitSpec
from litserve.utils import LitAPIStatus, ResponseBufferItem
from starlette.concurrency import run_in_threadpool

from ..data import EvaluationView
from ..inference.similarity import Embeddings, NearestImages
from ..runtimes import Predictor, open_predictor
from ..tasks import Verdict
from .served import ServedModel
from .uploads import BadUpload, UploadLimits, prepare, read_upload

PREDICT_PATH = "/predict"
SIMILAR_PATH = "/similar"
HEALTH_PATH = "/health"
API_KEY_HEADER = "X-API-Key"
Answered = tuple[Verdict, list[float] | None]
"""A worker's answer to one image: its verdict, and its features when the server has embeddings."""


def error(status: int, message: str) -> JSONResponse:
    """A 4xx or 5xx answer: one line of JSON."""
    return JSONResponse({"error": message}, status_code=status)


def answer_errors_as_json(app: Any) -> None:
    """Every error the server's framework answers by itself (an unknown path, a missing key, a request FastAPI
    refuses) as :func:`error` answers: ``{"error": "..."}``, whatever raised it."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def http_error(request: Request, raised: StarletteHTTPException) -> JSONResponse:
        return error(raised.status_code, str(raised.detail))

    async def validation_error(request: Request, raised: RequestValidationError) -> JSONResponse:
        return error(422, "the request does not have the form this endpoint takes: " +
                     "; ".join(str(problem.get("msg", problem)) for problem in raised.errors()))

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


class ImageUploadSpec(LitSpec):
    """``POST /predict`` in LitServe's HTTP processes: an upload in, checked and cropped
    (:mod:`.uploads`), queued to the inference workers as a ``uint8`` array, their answer out."""

    def __init__(self, view: EvaluationView, limits: UploadLimits, embeddings: Path | None = None) -> None:
        super().__init__()
        self.api_path = PREDICT_PATH
        self.view = view
        self.limits = limits
        self.embeddings = embeddings
        self._index: NearestImages | None = None  # built in the HTTP process, on its first /similar

    def pre_setup(self, lit_api: ls.LitAPI) -> None:
        self.add_endpoint(self.api_path, self.predict_endpoint, ["POST"])
        self.add_endpoint(SIMILAR_PATH, self.similar_endpoint, ["POST"])

    def decode_request(self, request: np.ndarray, context_kwargs: dict | None = None) -> np.ndarray:
        return request

    def encode_response(self, output: dict, context_kwargs: dict | None = None) -> dict:
        return output

    async def predict_endpoint(self, request: Request) -> JSONResponse:
        answered = await self._answer(request)
        if isinstance(answered, JSONResponse):
            return answered
        return JSONResponse(answered["answer"])

    async def similar_endpoint(self, request: Request) -> JSONResponse:
        if self.embeddings is None:
            return error(404, "this server has no embedded folder: start it with --embeddings <embed's .npz>")
        k = request.query_params.get("k", "10")
        if not k.isdigit() or int(k) < 1:
            return error(422, f"k={k}: expected a whole number of neighbours, at least 1")
        answered = await self._answer(request)
        if isinstance(answered, JSONResponse):
            return answered
        if self._index is None:
            self._index = await run_in_threadpool(NearestImages, Embeddings.load(self.embeddings))
        found = self._index.search(np.asarray([answered["features"]], dtype=np.float32), int(k))[0]
        return JSONResponse({"neighbours": [{"rank": each.rank, "path": each.path, "distance": each.distance}
                                            for each in found], "model": answered["answer"]["model"]})

    async def _answer(self, request: Request) -> dict | JSONResponse:
        """The worker's answer to the uploaded image, or the error response that ends the request."""
        try:
            data = await read_upload(request, self.limits)
            image = await run_in_threadpool(prepare, data, self.view, self.limits)  # decoding leaves the loop free
        except BadUpload as bad:
            return error(bad.status, bad.message)
        uid = str(uuid.uuid4())
        event = asyncio.Event()
        self.response_buffer[uid] = ResponseBufferItem(event=event)
        self.request_queue.put_nowait((self.response_queue_id, uid, time.monotonic(), image))
        await event.wait()
        response, status = self.response_buffer.pop(uid).response
        if status == LitAPIStatus.ERROR:
            if isinstance(response, HTTPException):  # LitServe's: a request that waited past --timeout
                return error(response.status_code, str(response.detail))
            return error(500, "the model failed on this image; the server's log says why")
        return response


class ClassifierAPI(ls.LitAPI):
    """The inference worker: the model loaded once in its runtime (:func:`~lightning_resnet.runtimes.open_predictor`),
    batches of crops through it, one answer per image (:meth:`~.served.ServedModel.answer`)."""

    def __init__(self, served: ServedModel, view: EvaluationView, limits: UploadLimits, max_batch_size: int = 1,
                 batch_timeout: float = 0.0, api_key: str | None = None, embeddings: Path | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout,
                         spec=ImageUploadSpec(view, limits, embeddings))
        self.features = embeddings is not None  # answer the features too, for /similar
        self.served = served
        self.api_key = api_key
        self.model: Predictor | None = None  # loaded in the worker, by setup

    def authorize(self, request: Request) -> None:
        """LitServe's check of every request in the HTTP processes: the ``X-API-Key`` header must be the key, when
        there is one; ``/health`` stays open, for load balancers and service managers."""
        if self.api_key is None or request.url.path == HEALTH_PATH:
            return
        given = request.headers.get(API_KEY_HEADER)
        if given is None or not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise HTTPException(401, f"this server needs its key in the {API_KEY_HEADER} header"
                                     f"{'' if given is None else ' (the one given is not it)'}")

    def setup(self, device: str) -> None:
        # Ctrl-C reaches the whole process group; the server process stops the workers itself
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.model = open_predictor(self.served.path).to(device)
        self.decision = self.served.decision(self.model)

    def decode_request(self, request: np.ndarray) -> np.ndarray:
        return request

    def predict(self, images: np.ndarray) -> list[Answered] | Answered:
        """The verdicts on one crop (C, H, W) or on a batch of them (N, C, H, W), each with the image's features
        when the server has embeddings."""
        batch = torch.from_numpy(images if images.ndim == 4 else images[None])
        outputs = self.model.run(batch, features=self.features)
        said = self.decision.verdicts(outputs.probabilities, outputs.logits, self.model.class_names,
                                      self.served.top_k)
        features = outputs.features.tolist() if outputs.features is not None else [None] * len(said)
        answered = list(zip(said, features))
        return answered if images.ndim == 4 else answered[0]

    def encode_response(self, answered: Answered) -> dict[str, Any]:
        said, features = answered
        return {"answer": self.served.answer(said), "features": features}
