"""``model.cache_features``: the frozen epochs train the head on features computed once, with the result of training
on the images, and the folds of a cross-validation compute each image's features once."""

from __future__ import annotations

import torch

from lightning_resnet.cli import main

from ..conftest import tiny_args


def weights(run) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in run.model.model.state_dict().items()}


def test_cached_features_train_the_head_the_images_would_and_the_folds_share_them(workdir, caplog):
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
    main(tiny_args(images, *folds, "--data.fold", "1", "--trainer.logger.init_args.name", "fold"))
    # fold 1's training and validation images together are the folder's 30, all computed by the run above
    assert "feature cache: 30 of 30 images' features from the cache, 0 computed" in caplog.text
