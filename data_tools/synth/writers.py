"""Atomic file writers: every file appears complete or not at all.

Each writer renders its bytes in memory, writes them to a hidden temporary name in the target
folder and renames it into place (``os.replace`` is atomic within one file system), so an
interrupted run never leaves a truncated PNG, CSV or npz behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

TMP_MARK = ".tmp-"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def png_bytes(image: np.ndarray, rgb: bool = False) -> bytes:
    """8-bit PNG, mode L (or RGB of three identical channels), fast compression (§4.3)."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 image, got {image.dtype} {image.shape}")
    pil = Image.fromarray(image)  # 2-D uint8 → mode L
    if rgb:
        pil = pil.convert("RGB")
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def write_png(path: Path, image: np.ndarray, rgb: bool = False) -> bytes:
    data = png_bytes(image, rgb)
    atomic_write_bytes(path, data)
    return data


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[object]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def write_json(path: Path, obj: object) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode("utf-8"))


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
