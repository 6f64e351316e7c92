"""``fit --model.distillation.teacher``: a trained model teaches the one being trained, on the very batch it reads,
and stays out of everything the student leaves behind."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
import yaml

from lightning_resnet.cli import main
from lightning_resnet.data import Normalization
from lightning_resnet.tasks import SINGLE_LABEL
from lightning_resnet.training.distillation import renormalized

from ..conftest import cli_error, tiny_args

distillation_loss = SINGLE_LABEL.distillation_loss


@pytest.mark.slow
def test_a_teacher_teaches_the_batch_the_student_reads_and_is_no_part_of_the_student(trained, workdir, capsys):
    teacher_run = workdir / "teachers"
    shutil.move(trained.parent, teacher_run)  # logs/tiny: an experiment folder, whose newest run's best teaches
    student = main(tiny_args(workdir / "images", "--trainer.max_epochs", "1", "--data.image_size", "20",
                             "--data.normalize", "auto", "--model.distillation.teacher", str(teacher_run),
                             "--model.distillation.weight", "0.7", "--model.distillation.temperature", "3",
                             "--trainer.logger.init_args.name", "student"))
    model, teacher = student.model, student.model.teacher
    assert teacher.path == next((teacher_run / "version_0" / "checkpoints").glob("best-*.ckpt"))
    assert not teacher.network.training and not any(p.requires_grad for p in teacher.network.parameters())
    assert not any(key.startswith("teacher") for key in model.state_dict())
    assert {id(p) for p in teacher.network.parameters()}.isdisjoint(id(p) for p in model.parameters())

    # the training loss is the blend of the student's own loss and the KL to the teacher's logits of that batch,
    # the teacher reading it at its own size (16 px) and normalization (ImageNet's; the student's is measured)
    images = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    targets = torch.tensor([0, 1, 2, 1])
    batch = student.datamodule.normalization(images)
    model.train()
    model.trainer = None  # a step called by hand, outside the loop
    loss = model.training_step([batch, targets], 0)
    with torch.no_grad():
        own = F.cross_entropy(model(batch), targets)
        seen_by_teacher = teacher.normalization(F.interpolate(images.float(), size=(16, 16), mode="bilinear",
                                                              antialias=True))
        taught = distillation_loss(model(batch), teacher.network(seen_by_teacher), 3.0)
    assert teacher.normalization != student.datamodule.normalization
    assert loss.item() == pytest.approx(0.3 * own.item() + 0.7 * taught.item(), rel=1e-4)

    # nothing after fit needs the teacher: its runs gone, the student's checkpoint validates and exports
    shutil.rmtree(teacher_run)
    best = next((workdir / "logs/student/version_0/checkpoints").glob("best-*.ckpt"))
    saved = torch.load(best, weights_only=True)
    # the teacher's checkpoint file, not its folder, is recorded: a newer run of the teacher changes no resume
    assert saved["hyper_parameters"]["distillation"] == {"teacher": str(teacher.path), "weight": 0.7,
                                                         "temperature": 3.0}
    recorded = yaml.safe_load((workdir / "logs/student/version_0/config.yaml").read_text())
    assert recorded["model"]["distillation"]["teacher"] == str(teacher.path)
    assert not any("teacher" in key for key in saved["state_dict"])
    main(["validate", "--ckpt_path", str(best), "--trainer.enable_progress_bar", "false"])
    main(["export", "--ckpt_path", str(best)])
    assert best.with_suffix(".onnx").is_file()

    code, error = cli_error(capsys, tiny_args(workdir / "images", "--model.distillation.teacher",
                                              str(teacher_run)))
    assert code == 2 and f"model.distillation.teacher {teacher_run} does not exist" in error
    code, error = cli_error(capsys, tiny_args(workdir / "images", "--model.distillation.teacher", str(best),
                                              "--model.distillation.weight", "1.5"))
    assert code == 2 and "model.distillation.weight must be in [0, 1], got 1.5" in error
    code, error = cli_error(capsys, tiny_args(workdir / "images", "--model.distillation.teacher", str(best),
                                              "--model.freeze_backbone", "true", "--model.cache_features", "true"))
    assert code == 2 and "model.distillation needs the images: model.cache_features" in error
    shutil.rmtree(workdir / "images" / "class_2")
    code, error = cli_error(capsys, tiny_args(workdir / "images", "--model.distillation.teacher", str(best)))
    assert code == 2 and "knows the classes class_0, class_1, class_2; the data has class_0, class_1" in error


def test_the_distillation_term_is_the_softened_kl_and_a_batch_renormalized_is_the_same_pixels():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    assert distillation_loss(logits, logits, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    teacher = torch.tensor([[1.0, 1.0, 0.0], [3.0, 0.0, 0.0]])
    p_teacher, p_student = (teacher / 2).softmax(1), (logits / 2).softmax(1)
    by_hand = (p_teacher * (p_teacher.log() - p_student.log())).sum(1).mean() * 4
    assert distillation_loss(logits, teacher, 2.0).item() == pytest.approx(by_hand.item(), rel=1e-5)

    pixels = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    imagenet = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    measured = Normalization((0.3, 0.5, 0.2), (0.1, 0.3, 0.25))
    assert torch.allclose(renormalized(imagenet(pixels), imagenet, measured), measured(pixels), atol=1e-4)
    assert renormalized(imagenet(pixels), imagenet, imagenet).equal(imagenet(pixels))
