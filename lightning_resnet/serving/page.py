"""The page of ``demo`` (Gradio): drop a photo, take one with the webcam or pick an example of the validation
split, and read the top classes as a chart, the class activation map of the top class and whether the model
is unsure; of a multi-label model, its labels, every label's probability and the map of the most probable.

The image is read exactly as ``predict`` reads a file (the model's view of the file Gradio saved,
untouched: ``image_mode=None`` keeps Gradio from converting it), so the page says what
``predict`` would. Offline by design: no analytics, no share link, no flagging, no example cache.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ..data import DECODE_ERRORS
from ..data.decode import decode_problem
from ..inference.shipped import CheckpointClassifier, ShippedModel
from ..inference.verdict import LabelSetVerdict, Verdict, label_set_verdicts, verdicts
from ..reports import cam
from .api import ServedModel

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


def describe_verdict(said: Verdict, reject_below: float, classes: int) -> str:
    """The verdict in words (Markdown)."""
    if said.unsure:
        return (f"**Unsure**: {said.prediction}, probability {said.confidence:.3f}; its energy score {said.score:.2f} "
                f"is below {reject_below:.2f}: this image may be none of the {classes} classes.")
    above = f"at or above {reject_below:.2f}" if math.isfinite(reject_below) else "the model has no threshold"
    return f"**{said.prediction}**, probability {said.confidence:.3f} (energy score {said.score:.2f}, {above})."


def describe_label_set(said: LabelSetVerdict) -> str:
    """A multi-label model's verdict in words (Markdown)."""
    if not said.labels:
        return "**No label**: no label's probability reaches its threshold."
    return f"**{', '.join(said.labels)}**: the labels whose probability reaches their threshold."


class Demo:
    """What the page calls: a file in, the chart's values, the overlay and the verdict out."""

    def __init__(self, model: ShippedModel, served: ServedModel) -> None:
        self.model = model
        self.served = served

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
        probabilities, logits = self.model.classify([crop])
        served = self.served
        if served.label_thresholds is not None:
            labelled = label_set_verdicts(probabilities, self.model.class_names, served.label_thresholds)[0]
            chart = dict(labelled.probabilities)
            return chart, self._overlay(path, crop, max(chart, key=chart.get)), describe_label_set(labelled)
        said = verdicts(probabilities, logits, self.model.temperature, self.model.class_names, served.top_k,
                        served.reject_below)[0]
        return (dict(said.top), self._overlay(path, crop, said.prediction),
                describe_verdict(said, served.reject_below, len(self.model.class_names)))

    def _overlay(self, path: str, crop: torch.Tensor, shown: str) -> np.ndarray | None:
        """The Grad-CAM of the class (or label) ``shown`` over the file."""
        if not isinstance(self.model, CheckpointClassifier):
            return None  # an exported model carries no layers to look into
        top = torch.tensor([self.model.class_names.index(shown)])
        heat = cam.grad_cam(self.model.network, self.model.normalization(crop[None]), top)[0]
        return np.asarray(cam.overlay_on_file(path, heat, self.model.view.resize_size))


def build_page(model: ShippedModel, served: ServedModel, examples: list[str], examples_label: str) -> gr.Blocks:
    """The Gradio page of ``model``; ``examples`` are image files shown under the upload."""
    demo = Demo(model, served)
    classes = model.class_names
    multilabel = served.label_thresholds is not None
    kinds, does = ("labels", "finds the labels of an image among") if multilabel else ("classes", "tells apart")
    shown = len(classes) if multilabel else served.top_k
    with gr.Blocks(title=f"{served.name}: {len(classes)} {kinds}", analytics_enabled=False) as page:
        gr.Markdown(f"## {served.name} (version {served.version})\n"
                    f"A {model.metadata['backbone']} that {does} {len(classes)} {kinds}: "
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
                top = gr.Label(num_top_classes=shown, label=("every label's probability" if multilabel else
                                                             f"top {min(shown, len(classes))} classes"),
                               elem_id=TOP_CLASSES_ID)
                overlay = gr.Image(label=f"class activation map of the most probable {kinds[:-1]} (Grad-CAM)",
                                   interactive=False,
                                   elem_id=CAM_ID, visible=isinstance(model, CheckpointClassifier),
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
