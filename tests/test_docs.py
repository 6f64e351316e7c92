"""Every ``python -m lightning_resnet`` command of the README and of the guides in docs/, in page order, as a user
types them: each runs (shortened to a batch or two on a narrow network, on small stand-ins of the folders it
names), or the test names what this machine lacks for it and checks that the command line accepts it
(``--print_config``)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from lightning_resnet.cli import main
from lightning_resnet.data import write_digits
from lightning_resnet.data.digit_sets import write_digit_sets

from .conftest import QUARTER_WIDTH, ROOT, make_image_folder, make_label_sets, place_tiny_cifar10

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DIGITS_PER_CLASS = 30
PLACEHOLDERS = {"<ckpt>": "$CKPT", "<folder or image>": "new_images/", "<folder>": "new_images/"}

NARROW = ["--model.backbone_options", json.dumps(QUARTER_WIDTH)]
IN_PROCESS = ["--data.num_workers", "0"]
"""Loader workers are tested where they are the point (tests/data/test_workers.py, the interrupts with workers):
forked from the test's process for each command of the pages, they cost this file 18 s of its 103 s of CPU (85 s
without; the system time of the forks, 34 s, halved)."""
SHORT = {
    # appended to the page's command: one batch an epoch, one epoch (two for a resume), one batch to evaluate, on
    # the tests' quarter-width network (a checkpoint of the full width took a second to write)
    "fit": [*NARROW, *IN_PROCESS, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
            "--trainer.limit_val_batches", "1"],
    "validate": [*NARROW, *IN_PROCESS, "--trainer.limit_val_batches", "1"],
    "test": [*NARROW, *IN_PROCESS, "--trainer.limit_test_batches", "1"],
    "predict": [*NARROW, *IN_PROCESS, "--trainer.limit_predict_batches", "1"],
    # a model trained on one batch guesses, and its INT8 copy may guess otherwise: kept whatever it loses (export
    # reads the rest from the checkpoint)
    "export": ["--keep_accuracy_drop", "true"],
    "lr_find": [*NARROW, *IN_PROCESS, "--num_training", "8"],
    "pretrain": [*NARROW, *IN_PROCESS, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                 "--trainer.limit_val_batches", "1"],
}

NOT_RUN = {
    # a part of a command -> what this machine lacks to run it (the command is parsed instead)
    "configs/resnet50_birds.yaml --data.data_dir ~/birds": "a GPU: ResNet-50 at 224 px on photos",
    "configs/resnet50_birds.yaml --data.data_dir data/birds_streaming": "a GPU: ResNet-50 at 224 px on photos",
    "configs/resnext50_monkeypox.yaml": "a GPU: ResNet-50 at 224 px on photos",
    "--trainer.logger.init_args.name birds": "the ResNet-50 birds run above",
    "s3://": "an S3 bucket",
    "--trainer.accelerator gpu": "GPUs on two machines",
    "postgresql://user@dbhost": "the PostgreSQL server it names",
    "configs/pretrain_photos.yaml": "a GPU: ResNet-50 at 224 px on photos",
    "configs/resnet56_cifar10.yaml --model.backbone": "the ResNet-56 recipe run above at another depth (tests/models/"
                                                      "test_models.py builds each depth)",
    "configs/resnet110_cifar10.yaml": "the ResNet-56 recipe run above, with a warm-up (tests/training/"
                                      "test_paper_recipe.py checks its schedule)",
    "configs/resnet18_cifar.yaml": "the time of ResNet-18 on CIFAR-10's 45,000 images at 32 px (the config parses)",
    " serve ": "a stop: a server runs until stopped (tests/serving/test_serve.py starts and stops one)",
    " demo --model": "a stop: a server runs until stopped (tests/serving/test_demo.py starts and stops one)",
    " sweep ": "the time of 12 or more trials, a process each (tests/cli/test_sweep.py runs sweeps of 1 to 3)",
    " cross_validate ": "the time of 3 or 5 folds, a process each (tests/reports/test_data_issues.py runs 3 folds, "
                        "tests/data/test_streaming.py 2)",
    "--predictions logs/demo/crossval_0": "the cross-validation above",
    "--data.exclude logs/demo/version_0/label_issues.csv": "the label_issues.csv of the inspection above",
    "--format timm": "a network timm builds: the tests' narrow one has the CIFAR stem (tests/inference/"
                     "test_timm_hub.py exports one and loads it in timm)",
}

STAND_INS = ["folder", "~/birds", "~/monkeypox", "~/new_photos", "data/birds", "data/noisy_digits", "data/scraped",
             "~/unlabelled"]
"""Folders the pages name, made as small generated image folders; ``new_images/`` and ``path/to/test_folder`` are
digits (a test folder's classes are the model's)."""


def page_commands(page: Path) -> list[str]:
    """The commands of a page's code blocks and inline code, continuation lines joined."""
    text = page.read_text()
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", text, flags=re.S)).replace("\\\n", " ")
    inline = re.findall(r"`([^`\n]*python -m lightning_resnet [a-z][^`\n]*)`", text)
    return [line for line in blocks.splitlines() if "-m lightning_resnet " in line] + inline


def lacking(command: str) -> str | None:
    return next((reason for part, reason in NOT_RUN.items() if part in command), None)


def digits_to_test_on(digits: Path, folders: list[Path]) -> None:
    """Two of each class of the digits the demo wrote, in each of ``folders``."""
    for digit in digits.iterdir():
        for image in sorted(digit.iterdir())[:2]:
            for folder in folders:
                (folder / digit.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(image, folder / digit.name / image.name)


def assert_same_weights(run: Path, rerun: Path) -> None:
    first, second = (torch.load(folder / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
                     for folder in (run, rerun))
    assert run != rerun and first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first), (run, rerun)


def test_the_readme_is_a_landing_page_whose_guides_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    linked = re.findall(r"\]\((docs/[^)]+\.md)\)", readme)
    assert {ROOT / link for link in linked} == set(PAGES[1:]), linked
    assert "source .venv/bin/activate" in readme


def run(args: list[str], output: Path | None) -> tuple[int, str]:
    """``main(args)`` here, its standard output kept for ``output``: its exit code and what it printed."""
    printed = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        try:
            main(args)
        except SystemExit as exit_code:
            code = exit_code.code or 0
    if output is not None:
        output.write_text(printed.getvalue())
    return code, printed.getvalue()


@dataclass
class Ran:
    """What running a page's commands did."""

    ran: int = 0
    parsed: int = 0


def run_page(page: Path, tmp_path: Path, home: Path, skip: set[str]) -> Ran:
    """Run the commands of ``page`` in ``tmp_path`` (the working folder), in page order: each as typed, shortened,
    or parsed only when :data:`NOT_RUN` names what this machine lacks for it; ``skip``: commands typed as they were
    on an earlier page, which ran there (the set grows)."""
    done = Ran()
    for command in page_commands(page):
        reason = lacking(command)
        typed = " ".join(command.split("#")[0].split())
        if reason is None and typed in skip:
            done.ran += 1  # a command an earlier page gave too (lr_find, validate and export of a checkpoint)
            continue
        skip.add(typed)
        checkpoints = sorted((tmp_path / "logs/demo/version_0/checkpoints").glob("best-*.ckpt"))
        for placeholder, value in {**PLACEHOLDERS, "$CKPT": str(checkpoints[0]) if checkpoints else "none"}.items():
            command = command.replace(placeholder, value)
        words = [word.replace("~", str(home)) for word in shlex.split(command, comments=True)]
        output = None
        if ">" in words:
            at = words.index(">")
            words, output = words[:at], tmp_path / words[at + 1]
        args = words[words.index("lightning_resnet") + 1 :]
        describes = "--print_config" in args or "--help" in args
        if reason is not None:
            args = ["fit", *args[1:]] if args[0] == "cross_validate" else args  # fit's options, once per fold
            code, printed = run([*args, "--print_config"], None)
            done.parsed += 1
        else:
            resuming = args[0] in ("fit", "pretrain") and "--ckpt_path" in args
            short = [*SHORT.get(args[0], []), *(["--trainer.max_epochs", "2"] if resuming else [])]
            if "_cifar10.yaml" in command or "semi_supervised_" in command:  # ResNet-20/56/110: narrow, 3 stages
                short = [option for option in short if option not in NARROW]
            if "--data.unlabelled_dir" in command:  # a batch of 8 and as many unlabelled images, not 32 and 224
                short += ["--data.batch_size", "8", "--data.unlabelled_ratio", "1"]
            code, printed = run(args if describes else [*args, *short], output)
            done.ran += 1
        assert code == 0, f"{page.name}: {command}\n{printed[-3000:]}"
        if args[0] == "fit" and reason is None and not describes:
            assert "best checkpoint: " in printed, f"{page.name}: {command}\n{printed[-3000:]}"
        if args[:3] == ["fit", "--config", "my_run.yaml"]:  # "the same run": the printed config trains its weights
            rerun = Path(re.search(r"run folder: (\S+)", printed).group(1))
            assert_same_weights(tmp_path / "logs/demo/version_0", rerun)
        if (tmp_path / "data/digits").is_dir() and not (tmp_path / "new_images").exists():
            digits_to_test_on(tmp_path / "data/digits", [tmp_path / "new_images", tmp_path / "path/to/test_folder"])
    return done


def make_stand_ins(root: Path, home: Path) -> None:
    """The folders and files the pages name, small: generated image folders, a labels file, the demos' data."""
    (root / "configs").symlink_to(ROOT / "configs")  # the pages' commands run from the checkout
    for seed, folder in enumerate(STAND_INS):
        make_image_folder(Path(folder.replace("~", str(home)) if folder.startswith("~") else root / folder),
                          classes=3, per_class=4, size=(16, 16), seed=seed)
    new_birds = make_image_folder(home / "new_birds", classes=4, per_class=4, size=(16, 16), seed=len(STAND_INS) + 1)
    for old in ("class_0", "class_1", "class_2"):  # docs/adding-classes.md: a class ~/birds lacks, alone
        shutil.rmtree(new_birds / old)
    photos = home / "photos"  # the labels file of docs/your-data.md: a generated folder's images, listed
    make_image_folder(photos / "by_class", classes=3, per_class=4, size=(16, 16), seed=len(STAND_INS))
    (photos / "labels.csv").write_text("path,labels\n" + "".join(
        f"{image.relative_to(photos)},{image.parent.name}\n" for image in sorted((photos / "by_class").rglob("*.*"))))
    make_label_sets(home / "tags", count=24)  # docs/several-labels.md's labels file
    write_digit_sets(root / "data" / "digit_sets", count=120)  # its demo, smaller (the first use writes 2,000)
    write_digits(root / "data" / "digits")  # the demo's digits, 30 of each class: suggest, inspect and the
    for digit in (root / "data" / "digits").iterdir():  # start-up check read every labelled image
        for image in sorted(digit.iterdir())[DIGITS_PER_CLASS:]:
            image.unlink()


@pytest.fixture(scope="module")
def after_the_readme(tmp_path_factory) -> tuple[Path, Ran, set[str]]:
    """A working folder with the pages' stand-ins in which the README's commands ran (the demo's run is the
    ``$CKPT`` of the guides); what ran, and the commands typed."""
    root = tmp_path_factory.mktemp("docs")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        place_tiny_cifar10(patch)  # docs/reproduce-the-paper.md's cifar10: 100 + 20 images in the cache
        make_stand_ins(root, root / "home")
        typed: set[str] = set()
        done = run_page(PAGES[0], root, root / "home", typed)
    return root, done, typed


@pytest.mark.slow  # every command of the README, about 1 s each
def test_every_command_of_the_readme_runs(after_the_readme):
    _, done, _ = after_the_readme
    assert done.ran >= 3 and done.ran + done.parsed == len(page_commands(PAGES[0]))


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES[1:], ids=[page.stem for page in PAGES[1:]])
def test_every_command_of_the_page_runs_or_names_what_it_lacks(after_the_readme, page, tmp_path, monkeypatch):
    """The page's commands, in a copy of the folder the README's ran in (each page on its own: a failure names
    it, and no page depends on another's leftovers)."""
    readme_folder, _, typed = after_the_readme
    work = tmp_path / "work"
    shutil.copytree(readme_folder, work, symlinks=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CACHE_HOME", str(work / "cache"))
    done = run_page(page, work, work / "home", set(typed))
    assert done.ran + done.parsed == len(page_commands(page))


def test_every_reason_for_not_running_a_command_names_a_command_of_a_page():
    commands = [command for page in PAGES for command in page_commands(page)]
    assert len(commands) >= 60, commands
    assert {part for part in NOT_RUN if any(part in command for command in commands)} == set(NOT_RUN)  # none stale
    assert sum(lacking(command) is None for command in commands) >= 35
