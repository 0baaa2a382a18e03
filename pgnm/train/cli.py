"""What the launch scripts share: parse the config, train, turn known failures into messages."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import torch

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


def _share_cpu_cores() -> None:
    """CPU ranks on one machine share its cores: unless OMP_NUM_THREADS says otherwise, each
    rank takes its share. Oversubscribed cores slow torch's small parallel ops tenfold."""
    if "OMP_NUM_THREADS" in os.environ or torch.cuda.is_available():
        return
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, ranks)))


def main(
    stage: str, argv: Sequence[str] | None, description: str, overrides: dict | None = None
) -> dict:
    _share_cpu_cores()
    config = config_from_argv(argv, description)
    if overrides:
        config = with_overrides(config, overrides, f"{stage} defaults")
    try:
        return fit(config, stage)
    except USER_ERRORS as err:
        if os.environ.get("PGNM_DEBUG"):  # the full traceback, for bugs rather than bad input
            raise
        rank = os.environ.get("RANK", "0")
        print(f"error ({stage}, rank {rank}): {err}", file=sys.stderr)
        raise SystemExit(2) from None
