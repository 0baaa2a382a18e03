"""A MedMNIST-style .npz written by the tests (the real files cannot be downloaded here)."""

from __future__ import annotations

import numpy as np


def write_npz(path, sizes=(6, 2, 3), side=28, channels=None, labels_shape=None):
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        shape = (n, side, side) + ((channels,) if channels else ())
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 3, labels_shape or (n, 1))
    np.savez(path, **arrays)
    return arrays
