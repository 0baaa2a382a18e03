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


def main(stage: Stage, argv: Sequence[str] | None, description: str,
         prog: str | None = None) -> FitResult:
    config = config_from_argv(argv, description, prog)
    with reported_as_one_line(stage.value):  # pgnm's own errors in one line; bugs keep tracebacks
        return fit(config, stage)


def launch(stage: Stage, description: str, argv: Sequence[str] | None = None,
           prog: str | None = None) -> NoReturn:
    """``pgnm pretrain|finetune`` and launch/'s door: train, then leave without the
    interpreter's teardown.

    Once a run has written and closed everything, freeing torch, DeepSpeed, DALI and MLflow
    object by object costs 4-5 s a process (measured on 2 CPU cores), paid by every rank of
    every launch. What a normal shutdown does before that teardown still happens, in its
    order: ``threading._shutdown`` stops thread pools (MLflow's artifact uploads) and joins
    the remaining non-daemon threads, then the exit handlers run (MLflow, logging, DALI, the
    data-loader workers). Errors leave the usual way, through ``main``'s ``SystemExit``.
    """
    main(stage, argv, description, prog)
    leave(0)


def leave(status: int) -> NoReturn:
    """Exit as the interpreter's shutdown begins (threads, then exit handlers), skipping the
    module-by-module teardown that follows it."""
    threading._shutdown()  # joining the threads directly would wait on idle pool workers
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
