"""What the launch scripts share: parse the config, train, turn known failures into messages."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pgnm.config import ConfigError, config_from_argv, with_overrides
from pgnm.data.manifest import ManifestError
from pgnm.data.spec import DataError
from pgnm.train.loop import TrainingDiverged, fit

# Failures a user can fix from the message alone: no traceback for these.
USER_ERRORS = (
    ConfigError,
    DataError,
    ManifestError,
    TrainingDiverged,
    FileNotFoundError,
    ValueError,
)


def main(
    stage: str, argv: Sequence[str] | None, description: str, overrides: dict | None = None
) -> dict:
    # Two CPU ranks sharing two cores: one thread each, or they fight over the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    config = config_from_argv(argv, description)
    if overrides:
        config = with_overrides(config, overrides, f"{stage} defaults")
    try:
        return fit(config, stage)
    except USER_ERRORS as err:
        rank = os.environ.get("RANK", "0")
        print(f"error ({stage}, rank {rank}): {err}", file=sys.stderr)
        raise SystemExit(2) from None
