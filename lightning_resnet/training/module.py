"""The training logic: ``ImageClassifier``, a LightningModule around a hand-written ResNet.

It holds the network, the loss, the metrics and the optimizer; what happens around the steps is in callbacks the
command line adds (checkpoints, divergence guard, random state, reports) and in the fine-tuning callback the model
asks for (:meth:`ImageClassifier.configure_callbacks`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor
from torchmetrics import MeanMetric

from ..bundle import BUNDLE_KEY, Architecture, ModelBundle, Preprocessing, Provenance, package_versions
from ..bundle.checkpoint import decision_in, without_decision_tensors
from ..data import datamodule_of
from ..errors import check
from ..models import create_model, load_weights
from ..stages import TEST, TRAIN, VAL
from ..tasks import MULTICLASS, TaskName, task_named
from .checkpoints import EPOCH_METRICS, FIT_SECONDS, SEMI_SUPERVISED_STATE
from .class_weights import loss_weights
from .distillation import Distillation, Teacher
from .evaluation_steps import EvaluationSteps
from .extension import start_extended
from .feature_cache import FrozenFeatures
from .finetuning import BackboneFreeze
from .metrics import TRAIN_LOSS
from .optimization import Schedule, optimization_of, stretch_to
from .run import run_dir
from .semi_supervised import METHODS, ConsistencyTraining, SemiSupervised, check_unlabelled
from .shared_by_copies import SharedByCopies
from .tta import TestTimeAugmentation


class ImageClassifier(EvaluationSteps, LightningModule):
    """Classify images with a ResNet / ResNeXt backbone from :mod:`lightning_resnet.models`.

    Args:
        backbone: architecture name, one of ``lightning_resnet.models.list_models()``.
        num_classes: classifier outputs; linked from the data module on the command line.
        task: ``multiclass`` (one class per image: softmax and cross-entropy) or ``multilabel`` (a set of
            labels per image: a sigmoid per label, binary cross-entropy, each label's threshold chosen on
            validation at the end of ``fit``); linked from the data module on the command line.
        backbone_options: keyword options of the architecture, e.g. ``{stem: cifar, drop_path_rate: 0.1}``.
        pretrained: weights loaded when training starts: ``torchvision`` (the architecture's default
            torchvision weights), ``torchvision:IMAGENET1K_V1``, ``timm:resnet50.a1_in1k``, or a file
            (``.pth``, ``.safetensors``, a ``.ckpt`` of this project); see :mod:`lightning_resnet.models.hub`.
            A classifier of another size is replaced by a new one.
        partial_weights: load ``pretrained`` weights that fit only part of the network (another depth,
            extra tensors); by default such weights are refused in one line naming what does not fit.
        freeze_backbone: train only the classifier (the backbone's BatchNorm statistics stay fixed).
        unfreeze_at_epoch: with ``freeze_backbone``, train the whole network from this epoch on.
        cache_features: with ``freeze_backbone`` and ``data.train_augment: basic``, compute the frozen
            backbone's features of the training and validation images once (cached on disk, shared by
            the folds of ``cross_validate`` and the trials of ``sweep``) and train the head on them
            until ``unfreeze_at_epoch``.
        backbone_lr_factor: the backbone's learning rate as a fraction of the head's (fastai's
            discriminative rates: e.g. 0.1 when fine-tuning pretrained weights).
        label_smoothing: cross-entropy label smoothing; targets may also be class probabilities. In a
            multi-label set, each label's target is moved towards 0.5 by as much.
        multilabel_loss: a multi-label set's loss: ``bce`` (binary cross-entropy per label) or
            ``asymmetric`` (timm's asymmetric loss, Ridnik et al. 2021, which weighs down the many easy
            negative labels).
        extend: a checkpoint of this project (or a run folder) to grow by the data's new classes: the new model
            starts from its weights and keeps each old class's classifier row, and the old model teaches the old
            classes (:mod:`.extension`; ``data.rehearsal`` adds its images); used by ``fit`` only.
        distillation: a trained model that teaches this one: ``teacher`` (its checkpoint), ``weight`` and
            ``temperature`` of the softened-logit term (:mod:`.distillation`); used by ``fit`` only.
        semi_supervised: how ``fit`` learns from ``data.unlabelled_dir``'s images (:mod:`.semi_supervised`):
            ``method`` (``fixmatch``, the default with that folder, or ``freematch``), ``threshold``, ``weight``,
            ``ema_decay``, ...
        class_weights: weights of the classes in the training loss: ``balanced`` (the training
            split's images over the number of classes times each class's count, scikit-learn's rule),
            one number per class, or null (all equal). Validation and test losses stay unweighted. In a
            multi-label set, one number per label: the weight of its positive images (``pos_weight``).
        optimizer: optimizer class and arguments; biases and norm weights get no weight decay. torch's fused
            kernel is used where the optimizer has one and neither ``fused`` nor ``foreach`` is given.
        lr_scheduler: per-step schedule over the whole run: ``constant``, ``cosine`` (to zero),
            ``onecycle`` (rising for ``warmup_epochs``, or a quarter of the run) or ``step``.
        warmup_epochs: linear warm-up from 1 % of the learning rate before the schedule.
        step_epochs: for ``step``, epochs between decays by ``step_gamma``.
        step_gamma: for ``step``, the decay factor.
        step_milestones: for ``step``, the optimizer steps at which to decay, instead of every ``step_epochs``
            (the ResNet paper's CIFAR recipe: 32000 and 48000 of 64000).
        channels_last: run the backbone in channels-last memory format (faster with tensor cores).
        compile: compile the backbone with ``torch.compile``.
        tta: test-time augmentation of ``validate``, ``test`` and ``predict``: ``none``, ``hflip`` (the
            image and its mirror) or ``five_crop`` (corners and centre); their softmax is averaged.
        calibrate: end ``fit`` by fitting a temperature on the validation split (temperature scaling),
            stored in the best checkpoint and applied by ``validate``, ``test`` and ``predict``. The
            threshold below which a prediction is unsure is chosen then too (``calibration.keep_correct``),
            with the temperature or, without it, on the softmax as it is.
        class_names: names of the classes in index order; linked from the data module and saved
            in checkpoints so that prediction needs no training folder.
        class_counts: what ``class_weights: balanced`` weighs by: a function giving the training
            split's image count of each class, called once when ``fit`` starts; the command line
            links the data module's.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 1000,
        task: TaskName = MULTICLASS,
        backbone_options: dict[str, Any] | None = None,
        pretrained: str | None = None,
        partial_weights: bool = False,
        freeze_backbone: bool = False,
        unfreeze_at_epoch: int | None = None,
        cache_features: bool = False,
        backbone_lr_factor: float = 1.0,
        label_smoothing: float = 0.0,
        multilabel_loss: Literal["bce", "asymmetric"] = "bce",
        extend: str | None = None,
        distillation: Distillation | None = None,
        semi_supervised: SemiSupervised | None = None,
        class_weights: Literal["balanced"] | list[float] | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: Schedule = "cosine",
        warmup_epochs: float = 0.0,
        step_epochs: int = 30,
        step_gamma: float = 0.1,
        step_milestones: list[int] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        tta: TestTimeAugmentation = "none",
        calibrate: bool = True,
        class_names: list[str] | None = None,
        class_counts: Callable[[], Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        check(class_names is None or len(class_names) == num_classes,
              f"model.class_names: {len(class_names or [])} class names given for num_classes={num_classes}")
        check(backbone_lr_factor > 0, f"model.backbone_lr_factor must be positive, got {backbone_lr_factor}")
        check(0.0 <= label_smoothing < 1.0, f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        check(not isinstance(class_weights, list) or (len(class_weights) == num_classes and min(class_weights) > 0),
              f"model.class_weights must be 'balanced' or {num_classes} positive numbers, one per class, "
              f"got {class_weights}")
        check(unfreeze_at_epoch is None or unfreeze_at_epoch >= 0,
              f"model.unfreeze_at_epoch must be 0 or more (or null: never), got {unfreeze_at_epoch}")
        check(not cache_features or freeze_backbone,
              "model.cache_features needs model.freeze_backbone true: a backbone that trains changes its features "
              "every step")
        if distillation is not None:
            distillation.check()
        if semi_supervised is not None:
            semi_supervised.check(list(METHODS))
        check(extend is None or not pretrained, "model.extend starts from the old model's weights: leave "
                                                "model.pretrained out")
        check(distillation is None or not cache_features,
              "model.distillation needs the images: model.cache_features trains the head on cached features, which "
              "the teacher cannot read")
        check(extend is None or not cache_features, "model.extend needs the images (its old model teaches): "
                                                    "model.cache_features trains the head on cached features")
        # tta is how this run reads images, not part of the trained model: a checkpoint does not impose it
        self.save_hyperparameters(ignore=["optimizer", "tta", "class_counts", "distillation", "semi_supervised"])
        for key, value in (("distillation", distillation), ("semi_supervised", semi_supervised)):
            self.hparams[key] = asdict(value) if value else None  # plain, for weights_only
        self.distillation = distillation
        self.teacher: Teacher | None = None  # read when fit starts, never saved with this model
        self.semi_supervised = semi_supervised
        self.consistency: ConsistencyTraining | None = None  # with data.unlabelled_dir, made when fit starts
        self.model = create_model(backbone, num_classes=num_classes, **(backbone_options or {}))
        self.task = task_named(task)
        self.criterion = self.task.loss(label_smoothing, multilabel_loss, class_weights is not None)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer_factory = SharedByCopies(optimizer)
        self.class_counts = SharedByCopies(class_counts)
        self.tta = tta
        self.class_names = list(class_names) if class_names else [str(index) for index in range(num_classes)]
        self.train_metrics, self.val_metrics, self.test_metrics = (self.task.metrics(num_classes, stage)
                                                                   for stage in (TRAIN, VAL, TEST))
        # torchmetrics' mean is synchronized as a sum and a count: exact when processes hold
        # different numbers of images (Lightning's sync_dist mean of a logged tensor is not)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        # the classes' weights in the training loss, set when fit starts; a buffer, so it follows the device
        self.register_buffer("loss_weights", None, persistent=False)
        self.decision = self.task.default_decision(num_classes)
        """How validate, test and predict turn the logits into answers: fitted at the end of fit
        (inference/calibration.py), kept in the best checkpoint's bundle."""
        self._run_folder: str | None = None  # the run's folder, asked once when fit starts (every process together)
        self._fit_started: float | None = None  # time.monotonic() when this part of fit started
        self._seconds_before_resume = 0.0  # the fit seconds of the checkpoint it resumed from
        self.saved_fit_seconds: float | None = None
        """The fit seconds the last checkpoint written holds (the run's "seconds", see ``checkpoints.FIT_SECONDS``)."""

    @property
    def num_classes(self) -> int:
        return self.hparams.num_classes

    def configure_callbacks(self) -> list[Callback]:
        callbacks: list[Callback] = []
        if self.hparams.freeze_backbone:
            callbacks.append(BackboneFreeze(self.hparams.unfreeze_at_epoch))
        if self.hparams.freeze_backbone and self.hparams.get("cache_features"):
            callbacks.append(FrozenFeatures(self.hparams.unfreeze_at_epoch))
        if self.semi_supervised is not None and self.semi_supervised.ema_decay is not None:
            callbacks.append(EMAWeightAveraging(decay=self.semi_supervised.ema_decay))
        return callbacks

    def setup(self, stage: str) -> None:
        data = datamodule_of(self.trainer) if self._trainer is not None else None
        if data is not None:  # the layer table's input and output sizes and FLOPs, at the start of fit
            self.example_input_array = torch.zeros(1, data.channels, *data.geometry.size, dtype=torch.uint8)
        if stage == "fit" and self.hparams.pretrained:
            load_weights(self.model, self.hparams.pretrained, self.hparams.backbone, self.hparams.backbone_options,
                         partial=self.hparams.partial_weights)
        if stage == "fit" and self._trainer is not None:
            self._run_folder = str(run_dir(self.trainer))
        if stage == "fit" and self.hparams.get("extend"):  # before the class counts: rehearsal adds images
            self.distillation = start_extended(self.hparams.extend, self.model, self.hparams.backbone,
                                               self.hparams.backbone_options, self.task, self.class_names, data,
                                               self.distillation)
        if stage == "fit" and self.hparams.class_weights is not None:
            refused = self.task.balanced_weights_refused
            check(self.hparams.class_weights != "balanced" or refused is None, str(refused))
            self.loss_weights = loss_weights(self.hparams.class_weights, self.class_names, self.class_counts.value)
        if stage == "fit":
            unlabelled = data is not None and data.unlabelled is not None
            check_unlabelled(self.semi_supervised, unlabelled, self.task.semi_supervised_refused,
                             self.hparams.cache_features)
            self.consistency = ConsistencyTraining(self.semi_supervised or SemiSupervised(), self.class_names,
                                                   self._mean_across_processes) if unlabelled else None
        if stage == "fit" and self.distillation is not None:
            check(data is not None, "model.distillation needs this project's data module (its normalization)")
            self.teacher = Teacher(self.distillation, self.task, self.class_names, data.channels, data.geometry.size,
                                   data.normalization)

    def configure_model(self) -> None:
        if self.hparams.compile:
            self.model.compile()

    def forward(self, images: Tensor) -> Tensor:
        """The network's logits; of a batch of cached backbone features (``cache_features``), the head's."""
        if images.ndim == 2:
            return self.model.forward_head(images)
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def loss(self, logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
        """The task's training loss."""
        return self.criterion(logits, targets, class_weights)

    # ----- training ------------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        self.decision = self.task.default_decision(self.num_classes)  # a run's checkpoints hold its own outputs
        self._fit_started = time.monotonic()
        if self.teacher is not None:
            self.teacher.to(self.device)

    @property
    def fit_seconds(self) -> float:
        """Wall seconds of ``fit`` so far, from its start, the parts before a resume included."""
        now = time.monotonic() - self._fit_started if self._fit_started is not None else 0.0
        return self._seconds_before_resume + now

    def on_train_start(self) -> None:
        if self.global_step > 0:  # resumed: the schedule's state is the checkpoint's, planned for its run
            for config in self.trainer.lr_scheduler_configs:
                change = stretch_to(config.scheduler, int(self.trainer.estimated_stepping_batches))
                if change:
                    rank_zero_info(change)

    def _mean_across_processes(self, values: Tensor) -> Tensor:
        return self.trainer.strategy.reduce(values, reduce_op="mean")

    def training_step(self, batch: list, batch_idx: int) -> Tensor:
        images, targets, *unlabelled = batch  # unlabelled: their weak and strong views (data.unlabelled_dir)
        if unlabelled:
            logits, unlabelled_loss = self.consistency.logits_and_loss(self, images, unlabelled[0], self.log_dict)
        else:
            logits, unlabelled_loss = self(images), None
        loss = self.loss(logits, targets, self.loss_weights)
        if self.teacher is not None:
            loss = self.teacher.loss(loss, logits, images)
        if unlabelled_loss is not None:
            loss = loss + unlabelled_loss
        self.train_metrics.update(*self.task.training_metric_inputs(logits, targets))
        self.log(TRAIN_LOSS, loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(images))
        trainer = self._trainer  # None when a step is called by hand
        if trainer is not None and (trainer.is_last_batch or batch_idx + 1 >= trainer.num_training_batches):
            # Logged once, at the last step, and computed by Lightning at the epoch's end together with
            # every other epoch metric: logging the metric objects at every step costs ~2 % of a CPU
            # step, and computing them in on_train_epoch_end would add collective calls that process
            # 0 (whose progress bar computes the epoch metrics first) makes in another order.
            self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    # ----- checkpoints and optimization ------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The model's bundle (:meth:`bundle`), the class names, the fit seconds, and the validation scores of the
        epoch (a best checkpoint carries its own)."""
        bundle = self.bundle()
        if bundle is not None:
            checkpoint[BUNDLE_KEY] = bundle.as_dict()
        checkpoint["class_names"] = self.class_names
        checkpoint[FIT_SECONDS] = self.saved_fit_seconds = self.fit_seconds
        if self.consistency is not None:
            checkpoint[SEMI_SUPERVISED_STATE] = self.consistency.method.state()
        if self._trainer is not None:
            checkpoint[EPOCH_METRICS] = {key: float(value) for key, value in self.trainer.callback_metrics.items()
                                         if key.startswith(f"{VAL}/") and value.numel() == 1}

    def bundle(self) -> ModelBundle | None:
        """This model as a trained model is described (its weights are the checkpoint's state dict): the one place
        a bundle is written; None without this project's data module, which knows the preprocessing."""
        data = datamodule_of(self.trainer) if self._trainer is not None else None
        if data is None:
            return None
        hparams = self.hparams
        model_options = {key: value for key, value in hparams.items() if not key.startswith("_")}
        architecture = Architecture(hparams.backbone, dict(hparams.backbone_options or {}))
        return ModelBundle(architecture, tuple(self.class_names),
                           Preprocessing(data.geometry, data.channels, data.normalization), self.decision,
                           Provenance(data.options(), model_options, self._run_folder, package_versions()))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the checkpoint's decision; check its classes against the model's; keep the seconds the run had
        taken."""
        self._seconds_before_resume = float(checkpoint.get(FIT_SECONDS, 0.0))
        if self.consistency is not None and SEMI_SUPERVISED_STATE in checkpoint:
            self.consistency.method.load_state(checkpoint[SEMI_SUPERVISED_STATE])
        self.decision = decision_in(checkpoint, self.num_classes)
        without_decision_tensors(checkpoint["state_dict"])  # where checkpoints written before the bundle kept it
        names = checkpoint.get("class_names")
        if names is not None:
            check(len(names) == self.num_classes, f"the checkpoint has {len(names)} classes, the model "
                  f"{self.num_classes}: train a new model or point data.data_dir at the data it was trained on")
            self.class_names = list(names)

    def configure_optimizers(self) -> dict[str, Any]:
        return optimization_of(self.optimizer_factory.value, self.model, self.hparams, self.trainer)
