"""A quiet TensorFlow start-up for the `mtl-keras` command.

TensorFlow's C++ side prints start-up lines (CUDA stubs, the CPU feature guard, cuInit) to the process's stderr when
it is first imported; some go through absl logging, which `TF_CPP_MIN_LOG_LEVEL` does not reach. The package imports
TensorFlow in its `__init__`, before `mtl_keras.cli` runs, so it is here, first in `__init__`, that the command is
recognised (`mtl-keras ...` or `python -m mtl_keras.cli ...`, without `--verbose`) and TensorFlow imported with
stderr's file descriptor pointed at /dev/null. A library user's process is left as it is.
"""

from __future__ import annotations

import contextlib
import os
import sys


def running_the_command() -> bool:
    """Whether this process is the `mtl-keras` command, asked for no `--verbose` output."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    as_script = bool(sys.argv) and os.path.basename(sys.argv[0]) == "mtl-keras"
    as_module = any(a == "-m" and b == "mtl_keras.cli" for a, b in zip(argv, argv[1:], strict=False))
    return (as_script or as_module) and "--verbose" not in sys.argv


@contextlib.contextmanager
def quiet_stderr():
    """Points file descriptor 2 at /dev/null for the block (C++ writes there directly, past `sys.stderr`)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly_for_the_command() -> None:
    if not running_the_command():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ logs after start-up too; real errors still raise
    with quiet_stderr():
        import tensorflow  # noqa: F401


import_tensorflow_quietly_for_the_command()  # on import: the package imports this module first
