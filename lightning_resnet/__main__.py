"""``python -m lightning_resnet``: the command line of :mod:`lightning_resnet.cli`; alone or with ``--help``, the
commands' table (:mod:`.cli.commands`), without importing torch and Lightning."""

import sys

if __name__ == "__main__":  # processes started by "spawn" (serve's workers) import this module again
    if sys.argv[1:] in ([], ["-h"], ["--help"]):
        from .cli.commands import overview

        print(overview())
        raise SystemExit(0 if sys.argv[1:] else 2)
    from .cli import main

    main()
elif __name__ == "__mp_main__":  # a process a server spawned (LitServe's inference workers): it ends with the server
    from .cli.child_processes import end_with_the_process_that_spawned_this_one

    end_with_the_process_that_spawned_this_one()
