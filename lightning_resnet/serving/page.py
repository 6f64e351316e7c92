"""The page of ``demo`` (Gradio): drop a photo, take one with the webcam or pick an example of the validation
split, and read the top classes as a chart, the class activation map of the top class and whether the model
is unsure; of a multi-label model, its labels, every label's probability and the map of the most probable.

The image is read exactly as ``predict`` reads a file (the model's view of the file Gradio saved,
untouched: ``image_mode=None`` keeps Gradio from converting it), so the page says what
``predict`` would. Offline by design: no analytics, no share link, no flagging, no example cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..data import DECODE_ERRORS
from ..data.decode import decode_problem
from ..reports import cam
from ..runtimes import Predictor
from .served import ServedModel

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported: no calls home, no version check

import gradio as gr  # noqa: E402  (after the switch above)

IMAGE_ID = "image"
TOP_CLASSES_ID = "top-classes"
VERDICT_ID = "verdict"
CAM_ID = "cam"
IMAGE_HEIGHT = 280
PAGE_CSS = (f"img {{ image-rendering: pixelated; }} #{IMAGE_ID} .image-frame img, #{CAM_ID} .image-frame img "
            "{ width: 100%; height: 100%; object-fit: contain; }")
"""Small images (an 8-px digit, a 64-px map) fill their frame, enlarged in blocks, not blurred."""


class Demo:
    """What the page calls: a file in, the chart's values, the overlay and the verdict out."""

    def __init__(self, model: Predictor, served: ServedModel) -> None:
        self.model = model
        self.served = served
        self.decision = served.decision(model)

    def classify(self, upload: dict | None) -> tuple[dict[str, float] | None, np.ndarray | None, str]:
        """``upload`` is what the browser sent, not preprocessed: Gradio would open it with Pillow first and answer
        a file that is no image with a long message of its own."""
        path = (upload or {}).get("path")
        if not path:
            return None, None, ""
        try:
            crop = self.model.view(path)
        except DECODE_ERRORS as error:
            raise gr.Error(f"{Path(upload.get('orig_name') or path).name} could not be read as an image "
                           f"({decode_problem(error)}): expected a photo or scan (JPEG, PNG, ...)",
                           print_exception=False) from None
        outputs = self.model.run(crop[None])
        names = self.model.class_names
        said = self.decision.verdicts(outputs.probabilities, outputs.logits, names, self.served.top_k)[0]
        return said.chart(), self._overlay(path, crop, said.cam_label), said.describe(len(names))

    def _overlay(self, path: str, crop: torch.Tensor, shown: str) -> np.ndarray | None:
        """The Grad-CAM of the class (or label) ``shown`` over the file."""
        network = self.model.network
        if network is None:
            return None  # an exported model carries no layers to look into
        top = torch.tensor([self.model.class_names.index(shown)])
        normalization = self.model.bundle.preprocessing.normalization
        heat = cam.grad_cam(network, normalization(crop[None].to(next(network.parameters()).device)), top)[0]
        return np.asarray(cam.overlay_on_file(path, heat, self.model.view.geometry))


def build_page(model: Predictor, served: ServedModel, examples: list[str], examples_label: str) -> gr.Blocks:
    """The Gradio page of ``model``; ``examples`` are image files shown under the upload."""
    demo = Demo(model, served)
    classes = model.class_names
    task = model.bundle.task
    chart_title, bars = task.chart(served.top_k, len(classes))
    with gr.Blocks(title=f"{served.name}: {len(classes)} {task.items}", analytics_enabled=False) as page:
        gr.Markdown(f"## {served.name} (version {served.version})\n"
                    f"A {model.bundle.architecture.backbone} that {task.does} {len(classes)} {task.items}: "
                    f"{', '.join(classes[:20])}{', ...' if len(classes) > 20 else ''}. Drop an image, take one with "
                    "the webcam, or click an example.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                 label="image", elem_id=IMAGE_ID, height=IMAGE_HEIGHT)
                if examples:
                    gr.Examples(examples, inputs=image, label=examples_label,
                                cache_examples=False, examples_per_page=12)
            with gr.Column():
                said = gr.Markdown(elem_id=VERDICT_ID)
                top = gr.Label(num_top_classes=bars, label=chart_title, elem_id=TOP_CLASSES_ID)
                overlay = gr.Image(label=f"class activation map of the most probable {task.item} (Grad-CAM)",
                                   interactive=False, elem_id=CAM_ID, visible=model.network is not None,
                                   height=IMAGE_HEIGHT)
        image.change(demo.classify, inputs=image, outputs=[top, overlay, said], preprocess=False)
    return page


def validation_examples(model_path: Path, per_class: int = 2, most: int = 12) -> list[str]:
    """Up to ``per_class`` images of each class from the validation split of the run that wrote ``model_path``
    (its ``split.csv``), ``most`` in all; none when that run's folder is not beside the model."""
    from ..data import SPLIT_CSV, read_split_csv
    from ..stages import VAL

    split = model_path.resolve().parent.parent / SPLIT_CSV
    if not split.is_file():
        return []
    chosen: dict[str, list[str]] = {}
    for row in read_split_csv(split):
        if row["split"] == VAL and len(chosen.setdefault(row["class"], [])) < per_class and Path(row["path"]).is_file():
            chosen[row["class"]].append(row["path"])
    return [paths[rank] for rank in range(per_class) for paths in chosen.values() if rank < len(paths)][:most]
