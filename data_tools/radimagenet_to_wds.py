"""Shard a RadImageNet release into WebDataset tars.

    python -m data_tools.radimagenet_to_wds --src DIR --out DIR [--format png|jpeg|raw]

``--src`` holds ``radiology_ai/`` and ``RadiologyAI_{train,val,test}.csv`` (``filename,label``,
filenames relative to ``--src``). The class of a sample comes from its path, never from a list:

    radiology_ai/CT/abd/liver_lesion/abd001234.png  ->  CT__abd__liver_lesion
    radiology_ai/US/thyroid/usn418235.png           ->  US__thyroid

Folder names are kept exactly (``Nodule``, ``ca++_tendinosis``, ``achilles_pathology_``).
The CSV ``label`` column is treated as opaque; a label that maps to more than one path-derived
class is reported as a warning, not an error.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

from data_tools.common import Record, ShardingError
from data_tools.common_cli import add_shard_arguments, convert
from pgnm.data.manifest import ClassInfo

SPLITS = ("train", "val", "test")
MODALITIES = ("CT", "MR", "US")


def class_key(filename: str) -> tuple[str, str, str, str | None]:
    """``(key, modality, organ, class name)`` from a release path; raises on other shapes."""
    parts = filename.replace("\\", "/").split("/")
    if len(parts) < 4 or parts[0] != "radiology_ai" or parts[1] not in MODALITIES:
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


def read_split_csv(src: Path, split: str) -> list[tuple[int, str, str]]:
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


def collect(src: Path) -> tuple[list[Record], list[ClassInfo], list[str]]:
    """Records for every CSV row, the sorted class table, and warnings."""
    rows_by_split = {split: read_split_csv(src, split) for split in SPLITS}
    keys: dict[str, tuple[str, str, str | None]] = {}
    labels_to_keys: dict[str, set[str]] = defaultdict(set)
    problems, parsed = [], []
    for split, rows in rows_by_split.items():
        for line, filename, label in rows:
            where = f"{src / f'RadiologyAI_{split}.csv'}:{line}"
            try:
                key, modality, organ, name = class_key(filename)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--src",
        type=Path,
        required=True,
        help="folder holding radiology_ai/ and RadiologyAI_{train,val,test}.csv",
    )
    add_shard_arguments(parser)
    args = parser.parse_args(argv)

    def collect_and_warn() -> tuple[list[Record], list[ClassInfo]]:
        records, classes, warnings = collect(args.src)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return records, classes

    convert(args, "radimagenet_to_wds", collect_and_warn)


if __name__ == "__main__":
    main()
