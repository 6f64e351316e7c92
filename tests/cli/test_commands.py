"""Every command is a line of one table (``lightning_resnet/cli/commands.py``): it makes the dispatcher, the help and
the table of docs/command-line.md."""

from __future__ import annotations

import importlib
import re

from lightning_resnet.cli.commands import COMMANDS, OWN, markdown_table

from ..conftest import ROOT


def test_the_command_line_page_lists_the_commands_of_the_table():
    page = (ROOT / "docs" / "command-line.md").read_text()
    shown = re.search(r"<!-- commands table.*?-->\n(.*?)\n<!-- end of the commands table -->", page, re.S).group(1)
    assert shown == markdown_table()


def test_each_command_of_its_own_is_the_function_of_its_name_in_the_module_of_its_name():
    assert OWN and len({command.name for command in COMMANDS}) == len(COMMANDS)
    for name in OWN:
        assert callable(getattr(importlib.import_module(f"lightning_resnet.cli.{name}"), name)), name
