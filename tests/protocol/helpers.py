"""Tiny downstream sets for the protocol tests: learnable, written in a fraction of a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _images(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    # class c is brighter by c: a signal a few fine-tuning steps can pick up
    noise = rng.integers(0, 80, (len(labels), size, size))
    return (noise + 60 * labels[:, None, None]).clip(0, 255).astype(np.uint8)


def write_npz(path: Path, classes: int = 2, counts=(12, 2, 10), size: int = 32) -> Path:
    """A MedMNIST-format file with ``counts[i]`` images per class in train / val / test."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        labels = np.repeat(np.arange(classes), n)
        arrays[f"{split}_images"] = _images(rng, labels, size)
        arrays[f"{split}_labels"] = labels.astype(np.uint8).reshape(-1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def write_folder(root: Path, classes=("benign", "malignant", "normal"), counts=(5, 1, 2),
                 size: int = 24) -> Path:
    rng = np.random.default_rng(1)
    for split, n in zip(("train", "val", "test"), counts):
        for c, name in enumerate(classes):
            for i, image in enumerate(_images(rng, np.full(n, c), size)):
                (root / split / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / split / name / f"{name} ({i + 1}).png")
    return root
