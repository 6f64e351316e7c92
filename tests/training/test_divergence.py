"""A non-finite loss stops the run with one line naming the step, and keeps the last good checkpoints."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback

from ..conftest import cli_error, tiny_args


class PoisonWeightsAtEpoch(Callback):
    def __init__(self, epoch: int = 1):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                pl_module.model.fc.weight.fill_(float("nan"))


def test_a_non_finite_loss_stops_with_a_message_and_keeps_the_good_checkpoints(workdir, capsys):
    code, error = cli_error(capsys, tiny_args(
        workdir / "images", "--trainer.max_epochs", "3",
        "--trainer.callbacks+=tests.training.test_divergence.PoisonWeightsAtEpoch"))
    assert code == 1 and error.count("\n") == 1
    assert "the training loss is nan at epoch 1" in error and "last good checkpoints are kept in" in error
    folder = workdir / "logs/tiny/version_0/checkpoints"
    for path in folder.glob("*.ckpt"):
        checkpoint = torch.load(path, weights_only=True)
        assert checkpoint["global_step"] == 3  # the end of epoch 0
        assert all(torch.isfinite(tensor).all() for key, tensor in checkpoint["state_dict"].items()
                   if key != "reject_below")  # -inf until calibration chooses it: no threshold
