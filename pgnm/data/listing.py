"""Which files of a source folder are samples, with their split and class: class folders, or a
labels CSV. The folder reader (:func:`pgnm.data.sources.records_from_folder`) and the DICOM
reader (:mod:`pgnm.data.dicom`) list their files here; every function
returns ``(split, class name, path)`` triples and raises
:class:`~pgnm.data.shards.ShardingError` naming the file (and line) for bad input.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from pgnm.data.shards import ShardingError

SPLITS = ("train", "val", "test")

Labelled = list[tuple[str, str, Path]]  # (split, class name, path)


def labelled_files(src: Path, labels_csv: Path | None = None) -> Labelled:
    """The files ``labels_csv`` lists (``path,label[,split]``), else the class folders'."""
    return csv_files(Path(src), Path(labels_csv)) if labels_csv else folder_files(Path(src))


def folder_files(src: Path) -> Labelled:
    """``(split, class, path)`` of every visible file under ``<split>/<class>/`` or
    ``<class>/`` (splits named train, val, test), in sorted order, whatever the suffix (DICOM
    archives often have none). Hidden files and folders are not samples."""
    if not src.is_dir():
        raise ShardingError(f"--src {src} is not a directory")

    def visible(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    top, files = visible(src), []
    in_splits = top and {p.name for p in top} <= set(SPLITS)
    for split, folder in ({p.name: p for p in top} if in_splits else {"train": src}).items():
        for class_dir in visible(folder):
            files += [(split, class_dir.name, p) for p in sorted(class_dir.rglob("*"))
                      if p.is_file() and not any(part.startswith(".") for part in
                                                 p.relative_to(class_dir).parts)]
    if not files:
        raise ShardingError(f"{src}: no class folders with files found")
    return files


def csv_files(src: Path, labels: Path) -> Labelled:
    """``(split, class, path)`` from ``path,label[,split]`` rows, paths relative to ``src``."""
    if not labels.is_file():
        raise ShardingError(f"--labels {labels} is not a file")
    files, seen = [], {}
    with open(labels, newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        if header not in (["path", "label"], ["path", "label", "split"]):
            raise ShardingError(f"{labels}:1: expected the header path,label[,split], got {header}")
        for row in reader:
            where, cells = f"{labels}:{reader.line_num}", [c.strip() for c in row]
            relative = PurePosixPath(cells[0].replace("\\", "/")) if cells else None
            problem = None
            if not any(cells):
                continue
            if len(cells) != len(header) or not cells[0] or not cells[1]:
                problem = f"expected {','.join(header)}, got {row}"
            elif len(cells) == 3 and cells[2] not in SPLITS:
                problem = f"split {cells[2]!r} is not one of {', '.join(SPLITS)}"
            elif relative.is_absolute() or ".." in relative.parts:
                problem = f"{cells[0]} must be a path inside --src, without '..'"
            elif relative in seen:
                problem = f"{relative} is listed again (first on line {seen[relative]})"
            elif not (src / relative).is_file():
                problem = f"file not found: {src / relative}"
            if problem:
                raise ShardingError(f"{where}: {problem}")
            seen[relative] = reader.line_num
            files.append((cells[2] if len(cells) == 3 else "train", cells[1], src / relative))
    if not files:
        raise ShardingError(f"{labels}: no rows")
    return files
