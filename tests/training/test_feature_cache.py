"""``model.cache_features``: the frozen epochs train the head on features computed once, with the result of training
on the images, and the folds of a cross-validation compute each image's features once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_resnet.cli import main
from lightning_resnet.data import ImageSamples, collate_readable
from lightning_resnet.data.features import save_features
from lightning_resnet.reports.out_of_fold import run_fold_model
from lightning_resnet.runtimes import TorchPredictor
from lightning_resnet.training import feature_cache
from lightning_resnet.training.checkpoints import best_checkpoint_of_run

from ..conftest import tiny_args


def weights(run) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in run.model.model.state_dict().items()}


@pytest.mark.slow
def test_cached_features_train_the_head_the_images_would_and_the_folds_share_them(workdir, caplog, monkeypatch):
    images = workdir / "images"
    frozen = ["--seed_everything", "7", "--model.freeze_backbone", "true", "--model.unfreeze_at_epoch", "2",
              "--trainer.max_epochs", "3"]
    on_images = main(tiny_args(images, *frozen, "--trainer.logger.init_args.name", "images"))
    assert "feature cache" not in caplog.text
    on_features = main(tiny_args(images, *frozen, "--model.cache_features", "true",
                                 "--trainer.logger.init_args.name", "features"))
    assert "feature cache: 0 of 30 images' features from the cache, 30 computed" in caplog.text
    # two frozen epochs on the features, the third on the images with the backbone training
    expected, got = weights(on_images), weights(on_features)
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-4, rtol=1e-3), name
    assert on_features.trainer.callback_metrics["val/acc"] == on_images.trainer.callback_metrics["val/acc"]

    caplog.clear()
    folds = ["--seed_everything", "7", "--model.freeze_backbone", "true", "--model.cache_features", "true",
             "--trainer.max_epochs", "1", "--data.num_folds", "3"]
    fold = main(tiny_args(images, *folds, "--data.fold", "1", "--trainer.logger.init_args.name", "fold"))
    # fold 1's training and validation images together are the folder's 30, all computed by the run above
    assert "feature cache: 30 of 30 images' features from the cache, 0 computed" in caplog.text

    # cross_validate's pass over every image reads the cache for a backbone frozen to the end, and its head
    # answers as the checkpoint does on the images
    best = best_checkpoint_of_run(Path(fold.trainer.log_dir)).path
    paths = sorted(str(path) for path in images.rglob("*.*"))
    (workdir / "from_cache").mkdir()
    (workdir / "from_images").mkdir()
    with monkeypatch.context() as patched:
        patched.setattr(TorchPredictor, "run", lambda *args, **kwargs: pytest.fail("the backbone ran again"))
        run_fold_model(best, paths, workdir / "from_cache", workers=0)
    monkeypatch.setattr(feature_cache, "cached_features", lambda *args: None)
    run_fold_model(best, paths, workdir / "from_images", workers=0)
    for array in ("embeddings.npy", "probabilities.npy"):
        cached, computed = np.load(workdir / "from_cache" / array), np.load(workdir / "from_images" / array)
        assert cached.shape[0] == 30 and np.allclose(cached, computed, atol=1e-5), array

    # a changed file, and only it, is read again
    caplog.clear()
    changed = images / "class_1" / "002.png"
    changed.write_bytes((images / "class_2" / "002.png").read_bytes())
    main(tiny_args(images, *folds, "--data.fold", "2", "--trainer.logger.init_args.name", "changed"))
    assert "feature cache: 29 of 30 images' features from the cache, 1 computed" in caplog.text


def test_a_batch_is_all_images_or_all_features_when_the_cache_is_switched_on_while_it_is_read(tmp_path):
    paths = [str(tmp_path / f"{i}.png") for i in range(4)]
    save_features(tmp_path / "features.pt", {path: ((0, 0), torch.full((8,), float(i))) for i, path in
                                             enumerate(paths)})
    dataset = ImageSamples([(path, 0) for path in paths], view=None)

    def view(path: str) -> torch.Tensor:  # the main process switches the cache on while a worker reads the batch
        dataset.read_features(tmp_path / "features.pt")
        return torch.zeros(3, 4, 4, dtype=torch.uint8)

    dataset.view = view
    first = collate_readable(dataset.__getitems__([0, 1, 2, 3]))
    assert first[0].shape == (4, 3, 4, 4)
    second = collate_readable(dataset.__getitems__([0, 1, 2, 3]))
    assert second[0].shape == (4, 8) and second[0][:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
