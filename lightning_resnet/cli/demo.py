"""``demo``: a page to try a trained model in the browser (Gradio): upload an image or use the webcam, and read
the top classes, the class activation map of the top class and whether the model is unsure.

Offline: no analytics, no share link, no flagging; it listens on 127.0.0.1 unless ``--host 0.0.0.0``.
"""

from __future__ import annotations

import hmac
import time
from functools import partial
from pathlib import Path

from jsonargparse import Namespace

from ..data import scan_unlabelled
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

COMMAND = "demo"


def parse(args: list[str]) -> Namespace:
    parser = CommandParser(COMMAND)
    add_model_options(parser)
    add_address_options(parser, port=7860)
    parser.add_argument("--examples", type=Path | None, default=None,
                        help="a folder of example images (default: a few of the validation split of the run that "
                             "wrote the checkpoint, from its split.csv)")
    return parser.parse_args(args)


def demo(args: list[str]) -> None:
    """Start the page and serve it until Ctrl-C."""
    options = parse(args)
    check_address(options.host, options.port)
    key = api_key(options)
    warn_if_open(options.host, options.port, key, COMMAND)
    from ..serving.page import PAGE_CSS, build_page, validation_examples  # only demo pays for importing Gradio
    from ..serving.served import load_served

    served, model = load_served(options.model, options.name, options.version, options.top_k,
                                threshold(options.reject_below))
    if options.examples:
        examples, label = scan_unlabelled(options.examples, "--examples")[:24], f"examples from {options.examples}"
    else:
        examples, label = validation_examples(options.model), "examples from the validation split"
    page = build_page(model, served, examples, label)
    where = address(options.host, options.port)
    print(f"demo of {served.path} ({served.name}, version {served.version}) at {where}"
          f"{'; log in with any name and the key as the password' if key else ''}; Ctrl-C stops", flush=True)
    stop_on_sigterm()
    end_with_this_process()
    page.launch(server_name=options.host, server_port=options.port, share=False, ssr_mode=False, quiet=True,
                allowed_paths=sorted({str(Path(path).resolve().parent) for path in examples}), show_error=True,
                css=PAGE_CSS, auth=key and partial(password_is, key),
                auth_message=key and "The key of this demo is its password (any name will do).",
                prevent_thread_lock=True)
    try:
        while page.is_running:
            time.sleep(0.1)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (stop_on_sigterm): closed without Gradio's farewell line
        page.close()


def password_is(key: str, name: str, password: str) -> bool:
    """Gradio's login check: the password is the key, whatever the name."""
    return hmac.compare_digest(password.encode(), key.encode())
