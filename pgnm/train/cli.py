"""What the training launchers share: parse the config, train, report errors in one line."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from pgnm.config import config_from_argv
from pgnm.errors import reported_as_one_line
from pgnm.names import Stage
from pgnm.train.loop import fit
from pgnm.train.result import FitResult


def main(stage: Stage, argv: Sequence[str] | None, description: str) -> FitResult:
    config = config_from_argv(argv, description)
    with reported_as_one_line(stage.value):  # pgnm's own errors in one line; bugs keep tracebacks
        return fit(config, stage)


def launch(stage: Stage, description: str) -> NoReturn:
    """The launch scripts' door: train, then leave without the interpreter's teardown.

    Once a run has written and closed everything, freeing torch, DeepSpeed, DALI and MLflow
    object by object costs 4-5 s a process (measured on 2 CPU cores), paid by every rank of
    every launch. The exit a normal shutdown performs before that teardown still happens:
    non-daemon threads are joined and the exit handlers run (MLflow, logging, DALI, the
    data-loader workers). Errors leave the usual way, through ``main``'s ``SystemExit``.
    """
    main(stage, None, description)
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what the interpreter's shutdown would run first
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
