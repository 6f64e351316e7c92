"""Every ``python -m lightning_resnet`` command the README shows is accepted by the command line."""

from __future__ import annotations

import contextlib
import io
import re
import shlex

import pytest

from lightning_resnet.cli import main

from .conftest import ROOT

PLACEHOLDERS = {"<ckpt>": "$CKPT", "<folder or image>": "new_images/", "<folder>": "new_images/"}


def readme_commands() -> list[str]:
    """The commands of the README's code blocks and inline code, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", text, flags=re.S)).replace("\\\n", " ")
    inline = re.findall(r"`([^`\n]*python -m lightning_resnet [a-z][^`\n]*)`", text)
    commands = [line for line in blocks.splitlines() if "-m lightning_resnet " in line] + inline
    assert len(commands) >= 15, commands
    return commands


def test_every_readme_command_parses(trained, workdir):
    (workdir / "configs").symlink_to(ROOT / "configs")  # the README's commands run from the checkout
    checkpoint = str(next((trained / "checkpoints").glob("best-*.ckpt")))
    for command in readme_commands():
        for placeholder, value in {**PLACEHOLDERS, "$CKPT": checkpoint}.items():
            command = command.replace(placeholder, value)
        words = shlex.split(command, comments=True)
        output = None
        if ">" in words:
            at = words.index(">")
            words, output = words[:at], workdir / words[at + 1]
        args = words[words.index("lightning_resnet") + 1 :]
        if args[0] in ("predict_onnx", "compare", "sweep", "serve", "demo"):  # not LightningCLI's: no --print_config
            args.append("--help")
        if "--help" not in args and "--print_config" not in args:
            args.append("--print_config")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_code:
            main(args)
        assert exit_code.value.code == 0, command
        if output is not None:
            output.write_text(printed.getvalue())
