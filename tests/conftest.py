from __future__ import annotations

import pytest
import torch

import pgnm  # noqa: F401  (makes timm importable on CPU-only torch before any test imports it)
from pgnm.config import Config, load_config

TINY = [
    "model.arch=resnet10t", "model.num_classes=5", "mask.grid=8", "data.image_size=32",
    "policy.hidden_dim=16", "data.batch_size=4",
]


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_config() -> Config:
    """Small enough for a CPU forward/backward in well under a second."""
    return load_config(overrides=TINY)
