"""What the training launchers share: parse the config, train, report errors in one line."""

from __future__ import annotations

from collections.abc import Sequence

from pgnm.config import config_from_argv, with_overrides
from pgnm.errors import reported_as_one_line
from pgnm.train.loop import fit


def main(
    stage: str, argv: Sequence[str] | None, description: str, overrides: dict | None = None
) -> dict:
    config = config_from_argv(argv, description)
    if overrides:
        config = with_overrides(config, overrides, f"{stage} defaults")
    with reported_as_one_line(stage):  # pgnm's own errors in one line; bugs keep tracebacks
        return fit(config, stage)
