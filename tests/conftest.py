from __future__ import annotations

import pytest
import torch

import pgnm  # noqa: F401  (makes timm importable on CPU-only torch before any test imports it)
from pgnm.config import Config, load_config

TINY = [
    "model.arch=resnet10t",
    "model.num_classes=5",
    "mask.grid=8",
    "data.image_size=32",
    "policy.hidden_dim=16",
    "data.batch_size=4",
]


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _own_mlflow_store(monkeypatch):
    """In-process training calls mlflow.set_tracking_uri / set_registry_uri, which export
    MLFLOW_*_URI; without this, every later test (and its subprocesses) would inherit them."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture
def tiny_config() -> Config:
    """Small enough for a CPU forward/backward in well under a second."""
    return load_config(overrides=TINY)


# ----------------------------------------------------------------------------- data fixtures

RAW_CLASSES = [  # odd names on purpose: they must survive untouched
    "radiology_ai/CT/lung/Nodule",
    "radiology_ai/CT/abd/normal",
    "radiology_ai/MR/af/ca++_tendinosis",
    "radiology_ai/MR/af/achilles_pathology_",
    "radiology_ai/US/thyroid",
]


def write_raw_release(root, per_class=6, size=(40, 48), seed=0):
    """A RadImageNet-shaped release: radiology_ai/ tree + the three split CSVs.

    Each image is a distinct random grey picture; rows 0-3 of each class go to train, 4 to val,
    5 to test. Returns {filename: pixels}.
    """
    import csv

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    splits = {"train": [], "val": [], "test": []}
    pixels = {}
    for folder in RAW_CLASSES:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            name = f"{folder}/img{len(pixels):06d}.png"
            image = rng.integers(0, 256, size, dtype=np.uint8)
            Image.fromarray(image).save(root / name)
            pixels[name] = image
            split = "train" if i < per_class - 2 else ("val" if i == per_class - 2 else "test")
            splits[split].append((name, folder.replace("/", "-")))
    for split, rows in splits.items():
        with open(root / f"RadiologyAI_{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["filename", "label"])
            writer.writerows(rows)
    return pixels


@pytest.fixture
def raw_release(tmp_path):
    src = tmp_path / "release"
    return src, write_raw_release(src)


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory):
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


@pytest.fixture(scope="session")
def heated_run(tiny_shards, tmp_path_factory):
    """The run directory of one stage-1 run (1 rank, paper objective, two epochs, registered
    in the embedded MLflow store under it) as ``heated/``: the tests that look at a finished
    heated model, or fine-tune from it inside that store, share it."""
    from launching import train

    root = tmp_path_factory.mktemp("heated_run")
    train("pretrain.py", 1, tiny_shards, root, "name=heated")
    return root
