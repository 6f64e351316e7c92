"""``python -m lightning_resnet``: the command line of :mod:`lightning_resnet.cli`."""

from .cli import main

main()
