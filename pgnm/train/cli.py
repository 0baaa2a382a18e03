"""What the training launchers share: parse the config, train, report errors in one line."""

from __future__ import annotations

from collections.abc import Sequence

from pgnm.config import config_from_argv
from pgnm.errors import reported_as_one_line
from pgnm.names import Stage
from pgnm.train.loop import fit
from pgnm.train.result import FitResult


def main(stage: Stage, argv: Sequence[str] | None, description: str) -> FitResult:
    config = config_from_argv(argv, description)
    with reported_as_one_line(stage.value):  # pgnm's own errors in one line; bugs keep tracebacks
        return fit(config, stage)
