"""The supported image sources, listed as :class:`~pgnm.data.shards.Record`\\ s to shard.

Each reader returns the records and the class table (``ClassInfo``, labels 0..C-1 in sorted
class order) that :func:`pgnm.data.writer.write_dataset` takes; bad input raises
:class:`~pgnm.data.shards.ShardingError` naming the file (and line). The command-line
converters (``python -m data_tools.radimagenet_to_wds``, ``folder_to_wds``, ``medmnist_to_wds``)
and the few-shot protocol (downstream sets) call these.

* :func:`records_from_radimagenet`: a RadImageNet release, ``radiology_ai/`` and
  ``RadiologyAI_{train,val,test}.csv`` (``filename,label``); the class comes from the path
  (:func:`radimagenet_class_key`), never from the CSV label.
* :func:`records_from_folder`: ``<split>/<class>/<image>`` or ``<class>/<image>`` (all train).
* :func:`records_from_medmnist`: a MedMNIST-format ``.npz`` (six keys, single-label).
* :func:`pgnm.data.dicom.records_from_dicom` (its own module: pydicom): DICOM files.
"""

from __future__ import annotations

import csv
import zipfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from pgnm.data.listing import SPLITS, folder_files
from pgnm.data.manifest import ClassInfo, ValCarving
from pgnm.data.shards import Record, ShardingError

Collected = tuple[list[Record], list[ClassInfo]]

# ----------------------------------------------------------------------------- RadImageNet

RADIMAGENET_MODALITIES = ("CT", "MR", "US")


def radimagenet_class_key(filename: str) -> tuple[str, str, str, str | None]:
    """``(key, modality, organ, class name)`` from a release path; raises on other shapes.

    ``radiology_ai/CT/abd/liver_lesion/x.png`` -> ``CT__abd__liver_lesion``;
    ``radiology_ai/US/thyroid/x.png`` -> ``US__thyroid``. Folder names are kept exactly.
    """
    parts = filename.replace("\\", "/").split("/")
    if len(parts) < 4 or parts[0] != "radiology_ai" or parts[1] not in RADIMAGENET_MODALITIES:
        raise ValueError(f"expected radiology_ai/<CT|MR|US>/<organ>/..., got {filename!r}")
    modality, organ = parts[1], parts[2]
    if modality == "US":  # no class level: the organ folder is the label
        if len(parts) != 4:
            raise ValueError(f"US paths are radiology_ai/US/<organ>/<file>, got {filename!r}")
        return f"US__{organ}", modality, organ, None
    if len(parts) != 5:
        raise ValueError(
            f"{modality} paths are radiology_ai/{modality}/<organ>/<class>/<file>, got {filename!r}"
        )
    return f"{modality}__{organ}__{parts[3]}", modality, organ, parts[3]


def read_radimagenet_split_csv(src: Path, split: str) -> list[tuple[int, str, str]]:
    """``(line number, filename, label)`` rows of one split CSV, checked for shape."""
    path = src / f"RadiologyAI_{split}.csv"
    if not path.is_file():
        raise ShardingError(f"missing split file {path}")
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["filename", "label"]:
            raise ShardingError(f"{path}: expected a header 'filename,label', got {header}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2 or not row[0].strip():
                raise ShardingError(f"{path}:{line}: expected 'filename,label', got {row}")
            rows.append((line, row[0].strip(), row[1].strip()))
    return rows


def records_from_radimagenet(src: Path) -> tuple[list[Record], list[ClassInfo], list[str]]:
    """Records for every CSV row, the sorted class table, and warnings (a CSV label that maps
    to more than one path-derived class: the label column is treated as opaque)."""
    rows_by_split = {split: read_radimagenet_split_csv(src, split) for split in SPLITS}
    keys: dict[str, tuple[str, str, str | None]] = {}
    labels_to_keys: dict[str, set[str]] = defaultdict(set)
    problems, parsed = [], []
    for split, rows in rows_by_split.items():
        for line, filename, label in rows:
            where = f"{src / f'RadiologyAI_{split}.csv'}:{line}"
            try:
                key, modality, organ, name = radimagenet_class_key(filename)
            except ValueError as err:
                problems.append(f"{where}: {err}")
                continue
            if not (src / filename).is_file():
                problems.append(f"{where}: file not found: {src / filename}")
                continue
            keys[key] = (modality, organ, name)
            labels_to_keys[label].add(key)
            parsed.append((split, filename, key))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ShardingError(f"{len(problems)} bad row(s) in the split CSVs:\n  {shown}{more}")
    classes = [
        ClassInfo(key=key, label=i, modality=keys[key][0], organ=keys[key][1], name=keys[key][2])
        for i, key in enumerate(sorted(keys))
    ]
    label_of = {c.key: c.label for c in classes}
    records = [
        Record(split, filename, key, label_of[key], path=str(src / filename))
        for split, filename, key in parsed
    ]
    warnings = [
        f"CSV label {label!r} appears under {len(ks)} path classes: {', '.join(sorted(ks))}"
        for label, ks in sorted(labels_to_keys.items())
        if len(ks) > 1
    ]
    return records, classes, warnings


# ----------------------------------------------------------------------------- folder per class

FOLDER_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def records_from_folder(src: Path) -> Collected:
    """``src`` is ``<split>/<class>/<image>`` (splits named train, val, test) or just
    ``<class>/<image>`` (the ``train`` split). Classes are the folder names, sorted, kept as
    written; hidden files are ignored, any other non-image file is an error naming it."""
    files = folder_files(src)
    for _, _, path in files:
        if path.suffix.lower() not in FOLDER_IMAGE_SUFFIXES:
            raise ShardingError(
                f"{path}: not an image file (expected {sorted(FOLDER_IMAGE_SUFFIXES)})"
            )
    names = sorted({name for _, name, _ in files})
    classes = [ClassInfo(key=name, label=i, name=name) for i, name in enumerate(names)]
    label = {c.key: c.label for c in classes}
    records = [
        Record(split, str(path.relative_to(src)), name, label[name], path=str(path))
        for split, name, path in files
    ]
    return records, classes


# ----------------------------------------------------------------------------- MedMNIST .npz

MEDMNIST_KEYS = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]


def _medmnist_labels(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ShardingError(
            f"{path}: {key} has shape {array.shape}; only single-label sets are supported"
        )
    if not np.issubdtype(array.dtype, np.integer) or (array < 0).any():
        raise ShardingError(f"{path}: {key} must hold non-negative integers")
    return array.astype(np.int64)


def records_from_medmnist(src: Path, class_names: list[str] | None = None) -> Collected:
    """``{train,val,test}_images`` (uint8, (N, H, W) or (N, H, W, 3)) and ``..._labels``
    ((N, 1) or (N,) integers); multi-label sets are refused. Classes are ``class_names`` in
    label order, or ``class_<i>``. The arrays are read into memory."""
    try:
        data = np.load(src, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ShardingError(f"{src}: not a readable .npz file ({err})") from None
    with data:
        missing = [k for k in MEDMNIST_KEYS if k not in data.files]
        if missing:
            raise ShardingError(f"{src}: missing key(s) {', '.join(missing)}")
        records, top = [], -1
        for split in SPLITS:
            images = data[f"{split}_images"]
            labels = _medmnist_labels(data[f"{split}_labels"], src, f"{split}_labels")
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


# ----------------------------------------------------------------------------- val carving


def carve_val(records: list[Record], carving: ValCarving, where: str) -> list[Record]:
    """``records`` with a stratified, seeded share of each class's training samples moved to a
    new ``val`` split (see :class:`ValCarving`); independent of the records' order. ``where``
    names the set in errors: one that has a val split already is refused."""
    if not 0.0 < carving.fraction < 1.0:
        raise ShardingError(f"{where}: the val fraction must be between 0 and 1, "
                            f"got {carving.fraction}")
    if any(r.split == "val" for r in records):
        raise ShardingError(f"{where}: has a val split already; carve one only from a set "
                            "without it")
    by_class: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        if record.split == "train":
            by_class[record.label].append(record)
    moved: set[str] = set()
    for label, members in sorted(by_class.items()):
        members.sort(key=lambda r: r.source)
        n = len(members)
        take = 0 if n < 2 else min(n - 1, max(1, round(carving.fraction * n)))
        rng = np.random.default_rng([carving.seed, label])
        moved |= {members[i].source for i in rng.permutation(n)[:take]}
    if not moved:
        raise ShardingError(f"{where}: no class has two training samples to carve a val split")
    return [replace(r, split="val") if r.split == "train" and r.source in moved else r
            for r in records]
