"""Every ``python -m lightning_resnet`` command of the README and of the guides in docs/ is accepted by the command
line: parsed with ``--print_config``, so that every key, value and file the parser checks is checked."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from lightning_resnet.cli import main

from .conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDERS = {"<ckpt>": "$CKPT", "<folder or image>": "new_images/", "<folder>": "new_images/"}


def page_commands(page: Path) -> list[str]:
    """The commands of a page's code blocks and inline code, continuation lines joined."""
    text = page.read_text()
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", text, flags=re.S)).replace("\\\n", " ")
    inline = re.findall(r"`([^`\n]*python -m lightning_resnet [a-z][^`\n]*)`", text)
    return [line for line in blocks.splitlines() if "-m lightning_resnet " in line] + inline


def test_the_readme_is_a_landing_page_whose_guides_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    linked = re.findall(r"\]\((docs/[^)]+\.md)\)", readme)
    assert {ROOT / link for link in linked} == set(PAGES[1:]), linked
    assert "source .venv/bin/activate" in readme


def test_every_command_of_every_page_parses(trained, workdir):
    (workdir / "configs").symlink_to(ROOT / "configs")  # the pages' commands run from the checkout
    checkpoint = str(next((trained / "checkpoints").glob("best-*.ckpt")))
    commands = {page.name: page_commands(page) for page in PAGES}
    assert sum(map(len, commands.values())) >= 40, commands
    for page, page_commands_ in commands.items():
        for command in page_commands_:
            for placeholder, value in {**PLACEHOLDERS, "$CKPT": checkpoint}.items():
                command = command.replace(placeholder, value)
            words = shlex.split(command, comments=True)
            output = None
            if ">" in words:
                at = words.index(">")
                words, output = words[:at], workdir / words[at + 1]
            args = words[words.index("lightning_resnet") + 1 :]
            if args[0] == "cross_validate":  # fit's options, run once per fold: its --help is fit's
                args = ["fit", *args[1:]]
            if "--help" not in args and "--print_config" not in args:
                args.append("--print_config")
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_code:
                main(args)
            assert exit_code.value.code == 0, f"{page}: {command}"
            if output is not None:
                output.write_text(printed.getvalue())
