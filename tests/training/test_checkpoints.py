"""Which checkpoint is best (ModelCheckpoint's answer, in one place), the metrics it carries, writes and rewrites
that a kill cannot leave half-written, and a checkpoint that would run code refused."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader, TensorDataset

from lightning_resnet.cli import main
from lightning_resnet.tasks.temperature import fit_temperature
from lightning_resnet.training.checkpoints import (
    AccuracyThenLossCheckpoint,
    best_checkpoint,
    best_checkpoint_of_run,
    epoch_metrics,
)

from ..conftest import ENV, cli_error, decision_in, make_image_folder, tiny_args


class RecordValidation(Callback):
    def __init__(self):
        self.logits, self.targets = [], []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.logits.append(outputs["logits"])
        self.targets.append(batch[1])


@pytest.mark.slow
def test_the_best_checkpoint_is_model_checkpoints_and_carries_its_scores_and_temperature(workdir):
    """96 validation images (a temperature is fitted on 96 or more) and 24 training images (so that some
    validation images are wrong, and the temperature has a minimum to find)."""
    make_image_folder(workdir / "held_out_most", classes=3, per_class=40)
    cli = main(tiny_args(workdir / "held_out_most", "--data.val_fraction", "0.8", "--trainer.max_epochs", "3"))
    chooser = next(c for c in cli.trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor)
    best = best_checkpoint(cli.trainer)
    assert str(best.path) == chooser.best_model_path and best.score == float(chooser.best_model_score)
    assert best_checkpoint_of_run(workdir / "logs" / "tiny" / "version_0") == best
    assert "optimizer_states" not in torch.load(best.path, weights_only=True)  # for evaluating; last.ckpt resumes
    scores = epoch_metrics(best.path)
    assert scores["val/acc"] == best.score and {"val/loss", "val/f1"} <= set(scores)
    assert "val/acc_top5" not in scores  # 3 classes: every image is in its top 5

    stored = decision_in(best.path)["temperature"]
    assert stored != 1.0 and cli.model.decision.temperature == stored  # the model in memory is calibrated too
    recorder = RecordValidation()
    cli.trainer.callbacks.append(recorder)
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=str(best.path), verbose=False)
    refitted = fit_temperature(torch.cat(recorder.logits), torch.cat(recorder.targets))
    assert abs(refitted - stored) < 1e-3 * stored  # fitted on the logits of the best epoch, not another's


@pytest.mark.slow
def test_a_finished_run_continued_into_a_new_run_folder_chooses_and_calibrates_its_own_best(trained, workdir):
    """Lightning restores the old best's path but not its score when the run folder changes (a new version)."""
    last = trained / "checkpoints" / "last.ckpt"
    cli = main(tiny_args(workdir / "images", "--trainer.max_epochs", "3", "--ckpt_path", str(last)))
    best = best_checkpoint(cli.trainer)
    assert best is not None and best.path.resolve().parent == workdir / "logs/tiny/version_1/checkpoints"
    assert decision_in(best.path)["temperature"] is not None


@pytest.mark.slow
def test_a_kill_during_the_calibration_rewrite_leaves_the_checkpoint_loadable(tmp_path):
    """The child may write at most 1 MB to a file; the kernel kills it (SIGXFSZ) part-way through rewriting
    a 4 MB checkpoint with its temperature. A write straight into the file would leave it cut short."""
    target = tmp_path / "best.ckpt"
    torch.save({"state_dict": {"weights": torch.zeros(10**6)}, "model_bundle": {"decision": {"temperature": 1.0}}},
               target)
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from lightning.pytorch import Trainer
        from lightning_resnet.bundle.checkpoint import set_decision
        from lightning_resnet.tasks import SINGLE_LABEL, Sync
        from lightning_resnet.training.checkpoints import rewrite_checkpoint
        trainer = Trainer(accelerator="cpu", logger=False)
        logits, targets = torch.randn(64, 3) * 5, torch.randint(0, 3, (64,))
        fitted = SINGLE_LABEL.fit_decision(logits, targets, ["a", "b", "c"], Sync(), True, 0.95)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the default is to die
        rewrite_checkpoint(trainer, {str(target)!r}, lambda saved: set_decision(saved, fitted.decision))
    """)
    (tmp_path / "tmp").mkdir()
    result = subprocess.run([sys.executable, "-c", script], env={**ENV, "TMPDIR": str(tmp_path / "tmp")},
                            capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGXFSZ, result.stderr.decode()[-2000:]
    kept = torch.load(target, weights_only=True)
    assert kept["model_bundle"]["decision"]["temperature"] == 1.0
    assert torch.equal(kept["state_dict"]["weights"], torch.zeros(10**6))


def test_the_command_line_keeps_lightnings_checkpoint_writer(workdir):
    cli = main(tiny_args(workdir / "images", "--trainer.fast_dev_run", "true"))
    assert type(cli.trainer.strategy.checkpoint_io) is TorchCheckpointIO


@pytest.mark.slow
def test_a_process_killed_mid_write_leaves_the_old_checkpoint_whole(tmp_path):
    """Lightning's writer (an fsspec transaction) keeps ``last.ckpt`` whole when a write dies.

    The child may write at most 1 MB to any file; the kernel kills it (SIGXFSZ) part-way through
    a 4 MB checkpoint. A writer that wrote straight into ``last.ckpt`` would leave it cut short.
    """
    target = tmp_path / "checkpoints" / "last.ckpt"
    TorchCheckpointIO().save_checkpoint({"epoch": 1, "weights": torch.zeros(1000)}, target)
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from lightning.pytorch import Trainer
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the default is to die
        trainer = Trainer(accelerator="cpu", logger=False)
        trainer.strategy.checkpoint_io.save_checkpoint({{"epoch": 2, "weights": torch.ones(10**6)}}, {str(target)!r})
    """)
    (tmp_path / "tmp").mkdir()
    env = {**ENV, "TMPDIR": str(tmp_path / "tmp")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGXFSZ, result.stderr.decode()[-2000:]
    checkpoint = torch.load(target, weights_only=True)
    assert checkpoint["epoch"] == 1 and torch.equal(checkpoint["weights"], torch.zeros(1000))
    assert [path.name for path in target.parent.iterdir()] == ["last.ckpt"]


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_that_would_run_code_is_refused(trained, workdir, capsys):
    marker = workdir / "code_ran"
    evil = workdir / "evil.ckpt"
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["payload"] = RunsCode(marker)
    torch.save(checkpoint, evil)
    for subcommand in ("fit", "predict"):
        code, error = cli_error(capsys, tiny_args(workdir / "images", "--ckpt_path", str(evil),
                                                  "--data.predict_dir", str(workdir / "holdout"),
                                                  subcommand=subcommand))
        assert code == 1 and "refusing a checkpoint" in error and "Traceback" not in error
    code, error = cli_error(capsys, tiny_args(workdir / "images", "--model.pretrained", str(evil),
                                              "--trainer.fast_dev_run", "true"))
    assert "refusing to load" in error
    assert not marker.exists()


class ScriptedScores(LightningModule):
    """A model whose validation logs the given (val/acc, val/loss) of each epoch."""

    def __init__(self, scores):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.scores = scores

    def training_step(self, batch, batch_idx):
        return (self.weight * batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        accuracy, loss = self.scores[self.current_epoch]
        self.log_dict({"val/acc": accuracy, "val/loss": loss})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(1, 1)))

    val_dataloader = train_dataloader


def fit_scripted(folder, scores, top_k, save_last=False, ckpt_path=None):
    chooser = AccuracyThenLossCheckpoint(dirpath=folder, monitor="val/acc", mode="max", save_top_k=top_k,
                                         filename="epoch{epoch}", auto_insert_metric_name=False, save_last=save_last)
    Trainer(max_epochs=len(scores), callbacks=[chooser], logger=False, enable_progress_bar=False,
            enable_model_summary=False).fit(ScriptedScores(scores), ckpt_path=ckpt_path)
    return chooser


def test_the_best_checkpoint_of_equal_accuracy_is_the_one_of_lower_loss(tmp_path):
    scores = [(0.5, 1.0), (0.9, 0.5), (0.9, 0.3), (0.8, 0.1), (0.9, 0.4), (0.7, 0.2)]
    best = fit_scripted(tmp_path / "top1", scores, top_k=1)
    assert Path(best.best_model_path).name == "epoch2.ckpt" and float(best.best_model_score) == pytest.approx(0.9)
    assert sorted(path.name for path in (tmp_path / "top1").iterdir()) == ["epoch2.ckpt"]

    top2 = fit_scripted(tmp_path / "top2", scores, top_k=2)  # epochs 2 and 4 kept: 0.9 at the two lowest losses
    assert Path(top2.best_model_path).name == "epoch2.ckpt" and Path(top2.kth_best_model_path).name == "epoch4.ckpt"
    assert sorted(path.name for path in (tmp_path / "top2").iterdir()) == ["epoch2.ckpt", "epoch4.ckpt"]


def test_a_resumed_run_breaks_ties_against_the_losses_before_the_interrupt(tmp_path):
    """The losses of the kept checkpoints travel in last.ckpt: after resuming, a tie of higher loss than the best
    before the interrupt does not replace it."""
    scores = [(0.9, 0.5), (0.9, 0.3), (0.9, 0.4)]
    first = fit_scripted(tmp_path, scores[:2], top_k=1, save_last=True)
    assert first.state_key.startswith("ModelCheckpoint{")  # runs from before this class resume into it
    resumed = fit_scripted(tmp_path, scores, top_k=1, save_last=True, ckpt_path=tmp_path / "last.ckpt")
    assert Path(resumed.best_model_path).name == "epoch1.ckpt"
    assert resumed.val_losses == {resumed.best_model_path: pytest.approx(0.3)}
