"""Tiny synthetic shards shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """Six classes across CT/MR/US, 40-px images, shards of 24."""
    from data_tools.radimagenet_to_wds import main as shard
    from data_tools.synth.generate import generate_radimagenet

    root = tmp_path_factory.mktemp("tiny_data")
    generate_radimagenet(
        root / "raw", classes=6, total=168, size=40, seed=0, balanced=True, progress=False
    )
    shard(
        [
            "--src",
            str(root / "raw"),
            "--out",
            str(root / "shards"),
            "--samples-per-shard",
            "24",
            "--workers",
            "1",
        ]
    )
    return root / "shards"
