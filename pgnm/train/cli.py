"""What the training launchers share: parse the config, share the cores, train."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from pgnm.config import config_from_argv, with_overrides
from pgnm.errors import reported_as_one_line
from pgnm.train.loop import fit


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
    with reported_as_one_line(stage):  # pgnm's own errors in one line; bugs keep tracebacks
        return fit(config, stage)
