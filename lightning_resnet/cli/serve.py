"""``serve``: a trained model as an HTTP service (LitServe), with dynamic batching.

``POST /predict`` with an image (the body, or the multipart field ``file``) answers its top
classes with calibrated probabilities and whether it is unsure; ``GET /health`` and ``GET /info``
(the model's metadata); with ``--embeddings`` (``embed``'s file of a folder), ``POST /similar?k=10`` answers the
nearest images of that folder. It listens on 127.0.0.1 unless ``--host 0.0.0.0`` asks for every interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from jsonargparse import Namespace

from ..errors import check
from .child_processes import end_with_this_process
from .options import (
    CommandParser,
    add_address_options,
    add_model_options,
    address,
    api_key,
    check_address,
    stop_on_sigterm,
    threshold,
    warn_if_open,
)

COMMAND = "serve"


def parse(args: list[str]) -> Namespace:
    from ..serving.uploads import MAX_PIXELS, MAX_UPLOAD_MB

    parser = CommandParser(COMMAND)
    add_model_options(parser)
    add_address_options(parser, port=8000)
    parser.add_argument("--max_batch_size", type=int, default=8,
                        help="requests answered by one forward pass at most (1: no batching)")
    parser.add_argument("--batch_timeout", type=float, default=0.005,
                        help="seconds a batch waits to fill before it runs")
    parser.add_argument("--workers", type=int, default=1, help="inference processes (each holds the model)")
    parser.add_argument("--accelerator", type=Literal["auto", "cpu", "cuda", "mps"], default="auto",
                        help="where a checkpoint runs (an exported .onnx or .xml runs on the CPU)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds a request may wait for a worker before it is answered 504")
    parser.add_argument("--max_upload_mb", type=float, default=MAX_UPLOAD_MB, help="largest upload accepted")
    parser.add_argument("--max_pixels", type=int, default=MAX_PIXELS,
                        help="largest image accepted, in pixels (a guard against decompression bombs)")
    parser.add_argument("--embeddings", type=Path | None, default=None,
                        help="embed's .npz of a folder, by this model: POST /similar answers its nearest images")
    parser.add_argument("--log_level", type=Literal["critical", "error", "warning", "info", "debug"],
                        default="warning", help="what LitServe and uvicorn log (info: every request)")
    return parser.parse_args(args)


def check_accelerator(accelerator: str) -> None:
    import torch

    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    check(available.get(accelerator, True),
          f"--accelerator {accelerator}: this machine has none; use --accelerator cpu (or auto)")


def check_embeddings(file: Path, model) -> None:
    """One line unless ``file`` is embed's and its features have the length ``model`` gives."""
    import torch

    from ..inference.similarity import Embeddings

    embeddings = Embeddings.load(file.expanduser(), "--embeddings")
    channels, (height, width) = model.bundle.preprocessing.channels, model.view.size
    given = model.run(torch.zeros(1, channels, height, width, dtype=torch.uint8), features=True).features.shape[1]
    check(given == embeddings.features.shape[1],
          f"--embeddings {file} holds {embeddings.features.shape[1]} features an image, --model gives {given}: "
          "embed the folder with this model")


def serve(args: list[str]) -> None:
    """Start the service and answer until Ctrl-C."""
    options = parse(args)
    check(options.max_batch_size >= 1, f"--max_batch_size must be at least 1, got {options.max_batch_size}")
    check(options.batch_timeout >= 0, f"--batch_timeout must be 0 or more seconds, got {options.batch_timeout}")
    check(options.workers >= 1, f"--workers must be at least 1, got {options.workers}")
    check(options.timeout > options.batch_timeout,
          f"--timeout must be more than --batch_timeout ({options.batch_timeout}), got {options.timeout}")
    check(options.max_upload_mb > 0, f"--max_upload_mb must be positive, got {options.max_upload_mb}")
    check(options.max_pixels >= 1, f"--max_pixels must be at least 1, got {options.max_pixels}")
    check_address(options.host, options.port)
    check_accelerator(options.accelerator)
    key = api_key(options)
    warn_if_open(options.host, options.port, key, COMMAND)

    import litserve as ls  # only serve pays for importing the server

    from ..runtimes import EXPORTED
    from ..serving.api import PREDICT_PATH, SIMILAR_PATH, ClassifierAPI, answer_errors_as_json
    from ..serving.served import load_served
    from ..serving.uploads import UploadLimits

    served, model = load_served(options.model, options.name, options.version, options.top_k,
                                threshold(options.reject_below))
    info = served.describe(model)
    if options.embeddings is not None:
        check_embeddings(options.embeddings, model)
    limits = UploadLimits(int(options.max_upload_mb * 2**20), options.max_pixels)
    api = ClassifierAPI(served, model.view, limits, options.max_batch_size, options.batch_timeout, key,
                        options.embeddings and options.embeddings.expanduser().resolve())
    decision, classes = served.decision(model), model.class_names
    del model  # each worker loads its own
    accelerator = "cpu" if Path(served.path).suffix in EXPORTED else options.accelerator
    server = ls.LitServer(api, accelerator=accelerator, workers_per_device=options.workers, timeout=options.timeout,
                          model_metadata=info)
    answer_errors_as_json(server.app)
    where = address(options.host, options.port)
    answers = f"{len(classes)} {decision.task.items}, {decision.task.describe_decision(decision)}"
    print(f"serving {served.path} ({served.name}, version {served.version}; {answers}) at {where}{PREDICT_PATH}; "
          f"{f'POST {SIMILAR_PATH}?k=10 (the nearest of {options.embeddings}); ' if options.embeddings else ''}"
          f"GET /health, GET /info; batches of up to {options.max_batch_size}"
          f"{'; every request but /health needs the X-API-Key header' if key else ''}; Ctrl-C stops", flush=True)
    stop_on_sigterm()
    end_with_this_process()
    server.run(host=options.host, port=options.port, log_level=options.log_level, generate_client_file=False)
