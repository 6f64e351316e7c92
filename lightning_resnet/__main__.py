"""``python -m lightning_resnet``: the command line of :mod:`lightning_resnet.cli`."""

from .cli import main

if __name__ == "__main__":  # processes started by "spawn" (serve's workers) import this module again
    main()
