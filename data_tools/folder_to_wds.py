"""Shard a folder-per-class image set (a downstream or few-shot task) into WebDataset tars.

    python -m data_tools.folder_to_wds --src DIR --out DIR [--format png|jpeg|raw]

``--src`` is either ``<split>/<class>/<image>`` (splits named train, val, test) or just
``<class>/<image>``, which becomes the ``train`` split. Classes are the folder names, sorted,
kept exactly as written (``NORMAL``, ``benign``, ``glioma``). Hidden files are ignored; any
other file that is not an image is an error naming it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data_tools.common import Record, ShardingError
from data_tools.common_cli import add_shard_arguments, convert
from pgnm.data.manifest import ClassInfo

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
SPLIT_NAMES = {"train", "val", "test"}


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def collect(src: Path) -> tuple[list[Record], list[ClassInfo]]:
    if not src.is_dir():
        raise ShardingError(f"--src {src} is not a directory")
    top = sorted(p for p in src.iterdir() if p.is_dir() and _visible(p))
    if top and {p.name for p in top} <= SPLIT_NAMES:
        split_dirs = {p.name: p for p in top}
    else:
        split_dirs = {"train": src}
    per_split: dict[str, list[tuple[str, Path]]] = {}
    for split, folder in split_dirs.items():
        items = []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p)):
            for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and _visible(p)):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    raise ShardingError(
                        f"{path}: not an image file (expected {sorted(IMAGE_SUFFIXES)})"
                    )
                items.append((class_dir.name, path))
        per_split[split] = items
    names = sorted({name for items in per_split.values() for name, _ in items})
    if not names:
        raise ShardingError(f"{src}: no class folders with images found")
    classes = [ClassInfo(key=name, label=i, name=name) for i, name in enumerate(names)]
    label = {c.key: c.label for c in classes}
    records = [
        Record(split, str(path.relative_to(src)), name, label[name], path=str(path))
        for split, items in per_split.items()
        for name, path in items
    ]
    return records, classes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="folder of class folders")
    add_shard_arguments(parser)
    args = parser.parse_args(argv)

    convert(args, "folder_to_wds", lambda: collect(args.src))


if __name__ == "__main__":
    main()
