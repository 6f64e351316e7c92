"""``sweep``: an Optuna study whose trials are real fits; trials.csv, a best.yaml that reproduces the best value,
pruning, continuing after Ctrl-C, and one-line errors for a bad space or storage."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from lightning_resnet.cli import main
from lightning_resnet.training.checkpoints import best_checkpoint

from ..conftest import ROOT, ended_with_its_group, start_cli, tiny_args

SPACE = """model.optimizer.init_args.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
data.batch_size: {choices: [4, 8]}
model.label_smoothing: {low: 0.0, high: 0.2}
"""


@pytest.fixture(autouse=True)
def _trials_find_the_package(monkeypatch):
    """Trials are ``python -m lightning_resnet`` processes started in the test's folder."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def sweep_args(workdir: Path, space: str, *extra: str, data_dir: Path | None = None) -> list[str]:
    (workdir / "space.yaml").write_text(space)
    fit = tiny_args(data_dir or workdir / "images", "--trainer.max_epochs", "2")[1:]
    return ["sweep", "--space", str(workdir / "space.yaml"), *extra, *fit]


class SlowSteps(Callback):
    """A tenth of a second per step, so that a signal lands in the middle of a trial."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(0.1)


def read_trials(folder: Path) -> list[dict[str, str]]:
    with open(folder / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_a_failing_trial_is_recorded_with_its_reason_a_pruned_one_stops_early_and_the_sweep_goes_on(workdir):
    space = "model.optimizer.init_args.lr: {choices: [0.003, 1.0e-9, 1.0e+12]}\n"
    # seed 2 draws 1e12, 0.003, 1e-9: a failure, the complete trial the pruner compares with, one to prune
    args = sweep_args(workdir, space, "--trials", "3", "--pruner_startup_trials", "1", "--seed", "2")
    folder = main([*args, "--trainer.max_epochs", "4"])
    rows = read_trials(folder)
    assert len(rows) == 3 and any(row["state"] == "complete" for row in rows)  # no trial asked for and not run
    failed = [row for row in rows if row["state"] == "fail"]
    assert failed and all(row["model.optimizer.init_args.lr"] == "1000000000000.0" for row in failed)
    assert all(row["reason"].startswith("error: ") and "loss" in row["reason"] for row in failed)
    pruned = [row for row in rows if row["state"] == "pruned"]
    assert pruned and all(row["model.optimizer.init_args.lr"] == "1e-09" for row in pruned)
    for row in pruned:
        last = torch.load(Path(row["folder"]) / "checkpoints" / "last.ckpt", weights_only=True)
        assert last["epoch"] < 3  # stopped before its fourth epoch


@pytest.mark.slow
def test_a_sweep_stopped_by_sigterm_continues_to_the_total_and_its_best_config_reruns_to_the_same_value(workdir,
                                                                                                       capsys):
    """SIGTERM to the sweep's process group mid-trial, as a cluster scheduler stops a job: the trial saves and
    stops, the sweep keeps the study and ends with no process of its group left; the same command continues."""
    args = sweep_args(workdir, SPACE, "--trials", "1", "--trainer.callbacks+=tests.cli.test_sweep.SlowSteps")
    process = start_cli(workdir, *args, start_new_session=True)
    folder = workdir / "logs" / "tiny" / "sweep_space"
    first_epoch = folder / "trial_0" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not first_epoch.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert first_epoch.exists(), process.communicate()[1][-2000:]
    os.killpg(process.pid, signal.SIGTERM)  # to the sweep and its trial
    code, error = ended_with_its_group(process, timeout=60)
    assert code == 128 + signal.SIGTERM and "the same command continues it" in error, error[-2000:]
    assert "interrupted: saved" in (folder / "trial_0.log").read_text()  # the trial saved as a fit does
    capsys.readouterr()
    assert main(args).resolve() == folder.resolve()
    rows = read_trials(folder)
    assert "surplus" not in {row["state"] for row in rows}  # no trial asked for and not run
    counted = [row for row in rows if row["reason"] != "interrupted"]
    assert len(counted) == 1 and {row["state"] for row in counted} == {"complete"}
    assert [row["reason"] for row in rows if row["trial"] == "0"] == ["interrupted"]  # kept, not counted
    assert len({row["model.label_smoothing"] for row in rows}) == len(rows)  # the continued sweep draws anew
    assert {"model.optimizer.init_args.lr", "data.batch_size", "model.label_smoothing"} <= set(rows[0])
    best = max(counted, key=lambda row: float(row["value"]))
    printed = capsys.readouterr().out
    assert f"best: trial {best['trial']}" in printed and (folder / "optimization_history.png").is_file()
    main(["compare", str(folder)])
    header = capsys.readouterr().out.splitlines()[1]
    assert "model.label_smoothing" in header and "trainer.callbacks" not in header  # the sweep's own callback
    rerun = main(["fit", "--config", str(folder / "best.yaml")])
    assert best_checkpoint(rerun.trainer).score == pytest.approx(float(best["value"]), abs=1e-6)
    assert rerun.model.hparams.label_smoothing == pytest.approx(float(best["model.label_smoothing"]))
    # the study remembers what it was started with: one epoch instead of two would mix incomparable trials
    with pytest.raises(SystemExit) as refused:
        main([*args[:-2], "--trainer.max_epochs", "1", "--trials", "4"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert refused.value.code == 2 and "trainer.max_epochs 2, here 1" in error and "--study space_2" in error


@pytest.mark.slow
def test_a_sweep_whose_trials_all_fail_exits_non_zero_naming_each_reason(workdir, capsys, caplog):
    import optuna

    optuna.logging.enable_propagation()  # Optuna's own warnings, to caplog
    args = sweep_args(workdir, "model.optimizer.init_args.lr: {choices: [1.0e+12]}\n", "--trials", "1")
    try:
        with pytest.raises(SystemExit) as failed:
            main(args)
    finally:
        optuna.logging.disable_propagation()
    printed = capsys.readouterr()
    assert failed.value.code == 1 and "no trial completed" in printed.err
    assert "trial 0 failed: error: the training loss is" in printed.out
    # the sweep's own lock is not the journal's: asking waited 30 s for it and then forced it open
    assert not [record.getMessage() for record in caplog.records if "lock" in record.getMessage()]


@pytest.mark.parametrize(("space", "extra", "words"), [
    ("model.no_such_option: {low: 0.0, high: 1.0}\n", [], ["model.no_such_option"]),
    ("model.label_smoothing: {low: 0.2, high: 0.1}\n", [], ["model.label_smoothing", "empty", "low=0.2"]),
    ("model.label_smoothing: {mean: 0.1}\n", [], ["model.label_smoothing", "low and high"]),
    (SPACE, ["--storage", "postgresql://nobody@127.0.0.1:9/none"], ["--storage", "127.0.0.1"]),
    (SPACE, ["--metric", "val/bogus"], ["--metric val/bogus", "val/acc"]),
])
@pytest.mark.slow
def test_a_bad_space_or_storage_is_one_line_before_any_trial(workdir, capsys, space, extra, words):
    with pytest.raises(SystemExit) as exit_code:
        main(sweep_args(workdir, space, "--trials", "2", *extra))
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and all(word in lines[-1] for word in words), lines
    assert not list((workdir / "logs").rglob("trial_0.log")) if (workdir / "logs").exists() else True


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on a free loopback port, run as the ``postgres`` user; its URL."""
    servers = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    assert servers, "PostgreSQL is not installed: .ci/run installs Debian's postgresql package"
    bin_dir = servers[-1].parent
    root = Path(tempfile.mkdtemp(prefix="lightning-resnet-pg-"))  # pytest's folders are root's alone
    shutil.chown(root, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def as_postgres(*command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120)

    as_postgres(str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    as_postgres(str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"), "-w", "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "sweeps")
        yield f"postgresql://postgres@127.0.0.1:{port}/sweeps"
    finally:
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.system
def test_two_sweeps_on_one_postgresql_study_add_up_to_the_total_without_running_a_trial_twice(workdir, postgres):
    """... trained on a converted data set (LitData's format), as on a folder."""
    import optuna

    main(tiny_args(workdir / "images", "--output", str(workdir / "converted"), subcommand="convert"))
    args = sweep_args(workdir, SPACE, "--trials", "2", "--storage", postgres, "--study", "shared",
                      data_dir=workdir / "converted")
    # each with an experiment folder of its own, as on two machines: one in a process of its own, one in this one
    other = start_cli(workdir, *args, "--trainer.logger.init_args.name", "pg1")
    main([*args, "--trainer.logger.init_args.name", "pg2"])
    _, error = other.communicate(timeout=600)
    assert other.returncode == 0, error[-3000:]
    trials = optuna.load_study(study_name="shared", storage=postgres).get_trials()
    assert len(trials) == 2 and all(trial.state.name == "COMPLETE" for trial in trials)  # none asked for, not run
    assert sorted(trial.number for trial in trials) == list(range(2))
    runs = sorted(workdir.glob("logs/pg*/sweep_shared/trial_*/split.csv"))
    assert sorted(path.parent.name for path in runs) == [f"trial_{number}" for number in range(2)]  # each ran once
    converted_split = (workdir / "converted/split.csv").read_text()
    assert all(path.read_text() == converted_split for path in runs)
    for name in ("pg1", "pg2"):  # each machine lists every trial, wherever it ran (the other may still be running)
        rows = read_trials(workdir / "logs" / name / "sweep_shared")
        assert sorted(Path(row["folder"]) for row in rows) == sorted(path.parent.resolve() for path in runs)
        assert all(row["machine"] == socket.gethostname() for row in rows)
        assert (workdir / "logs" / name / "sweep_shared" / "best.yaml").is_file()


def test_the_objective_is_what_fit_chooses_by_for_the_datas_task(tmp_path, monkeypatch):
    """val/acc for one class per image, val/mAP for a labels file of label sets, unless --metric says otherwise."""
    from lightning_resnet.cli.sweep import parse

    from ..conftest import make_image_folder, make_label_sets

    monkeypatch.chdir(tmp_path)
    labels = make_label_sets(tmp_path / "sets", count=12)
    folder = make_image_folder(tmp_path / "images", classes=2, per_class=4)
    space = ["--space", str(ROOT / "configs/sweeps/demo.yaml"), "--trials", "1"]
    assert parse([*tiny_args(folder)[1:], *space])[0].metric == "val/acc"
    assert parse([*tiny_args(tmp_path / "sets", "--data.labels", str(labels))[1:], *space])[0].metric == "val/mAP"
    chosen = parse([*tiny_args(tmp_path / "sets", "--data.labels", str(labels))[1:], *space, "--metric", "val/f1"])
    assert chosen[0].metric == "val/f1"
