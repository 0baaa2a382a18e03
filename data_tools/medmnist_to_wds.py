"""Shard a MedMNIST-format ``.npz`` (the six-key layout, any image size) into WebDataset tars.

    python -m data_tools.medmnist_to_wds --src organamnist_224.npz --out DIR [--classes a,b,...]

The file holds ``{train,val,test}_images`` (uint8, (N, H, W) or (N, H, W, 3)) and
``{train,val,test}_labels`` (integers, (N, 1) or (N,)). Multi-label sets (ChestMNIST's
(N, 14) labels) are refused: pgnm trains single-label classifiers. Images are written as PNG
(lossless) unless ``--format`` says otherwise. The arrays are read into memory once (a 224-px
OrganAMNIST is about 3 GB), and each worker process receives only its shard's images.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import numpy as np

from data_tools.common import Record, ShardingError
from data_tools.common_cli import add_shard_arguments, convert
from pgnm.data.manifest import ClassInfo

SPLITS = ("train", "val", "test")
KEYS = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]


def _labels(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ShardingError(
            f"{path}: {key} has shape {array.shape}; only single-label sets are supported"
        )
    if not np.issubdtype(array.dtype, np.integer) or (array < 0).any():
        raise ShardingError(f"{path}: {key} must hold non-negative integers")
    return array.astype(np.int64)


def collect(src: Path, class_names: list[str] | None) -> tuple[list[Record], list[ClassInfo]]:
    try:
        data = np.load(src, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ShardingError(f"{src}: not a readable .npz file ({err})") from None
    with data:
        missing = [k for k in KEYS if k not in data.files]
        if missing:
            raise ShardingError(f"{src}: missing key(s) {', '.join(missing)}")
        records, top = [], -1
        for split in SPLITS:
            images = data[f"{split}_images"]
            labels = _labels(data[f"{split}_labels"], src, f"{split}_labels")
            if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
                raise ShardingError(
                    f"{src}: {split}_images must be uint8 (N, H, W[, 3]) matching {split}_labels, "
                    f"got {images.dtype} {images.shape} for {len(labels)} labels"
                )
            top = max(top, int(labels.max(initial=-1)))
            records += [
                Record(split, f"{src.name}:{split}[{i}]", "", int(labels[i]), pixels=images[i])
                for i in range(len(images))
            ]
    count = top + 1
    if class_names is not None and len(class_names) != count:
        raise ShardingError(f"--classes names {len(class_names)} classes, the labels need {count}")
    names = class_names or [f"class_{i}" for i in range(count)]
    classes = [ClassInfo(key=name, label=i, name=name) for i, name in enumerate(names)]
    records = [Record(r.split, r.source, names[r.label], r.label, pixels=r.pixels) for r in records]
    return records, classes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="MedMNIST-format .npz file")
    parser.add_argument("--classes", help="comma-separated class names, in label order")
    add_shard_arguments(parser)
    args = parser.parse_args(argv)

    names = args.classes.split(",") if args.classes else None
    convert(args, "medmnist_to_wds", lambda: collect(args.src, names))


if __name__ == "__main__":
    main()
