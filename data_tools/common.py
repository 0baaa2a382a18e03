"""Writing WebDataset shards: the part every converter shares.

A converter lists its samples as :class:`Record`\\ s (where the image is, its class) and calls
:func:`write_dataset`. That function

* shuffles each split across classes with a seeded permutation (DALI and webdataset only
  shuffle inside a small buffer, so class-ordered tars would give class-ordered batches);
* cuts it into shards of a fixed sample count and writes them in parallel worker processes;
* writes each shard atomically: the tar, its DALI index and its sidecar JSON are built under
  temporary names and renamed into place, the tar last, so a killed run never leaves a
  half-written shard under a final name;
* on a re-run with the same inputs and settings, skips shards whose sidecar matches the tar;
* writes ``dataset.json``, ``classes.json``, ``manifest.csv`` and ``report.json`` (duplicates
  and blank images) — see :mod:`pgnm.data.manifest` for the layout.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import tarfile
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pgnm.data.manifest import (
    CLASSES_FILE,
    DATASET_FILE,
    IMAGE_EXTENSIONS,
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    REPORT_FILE,
    ClassInfo,
    DatasetInfo,
    ShardInfo,
    SplitInfo,
)

PLAN_FILE = "plan.json"


class ShardingError(RuntimeError):
    """Input the converter cannot shard; the message names the file."""


@dataclass(frozen=True)
class Record:
    """One input sample: an image file, or in-memory pixels (``pixels``) named by ``source``."""

    split: str
    source: str  # how the manifest names it: a release-relative path, or "file.npz:split[i]"
    class_key: str
    label: int
    path: str | None = None  # where to read the image file; None when ``pixels`` are given
    pixels: np.ndarray | None = None  # uint8 (H, W) or (H, W, C)


@dataclass(frozen=True)
class Encoding:
    image_format: str = "png"  # png: keep the source bytes (lossless); jpeg; raw
    jpeg_quality: int = 90
    raw_size: int = 256


@dataclass
class SampleMeta:
    split: str
    shard: str
    key: str
    source: str
    class_key: str
    label: int
    md5: str  # of the source image, for duplicate detection
    bytes: int  # stored image size
    width: int
    height: int
    mode: str
    blank: bool
    psnr: float | None = None


# ----------------------------------------------------------------------------- per sample


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _psnr(reference: np.ndarray, test: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def encode(record: Record, encoding: Encoding) -> tuple[bytes, dict]:
    """Stored image bytes and what the manifest records about the source image."""
    if record.pixels is not None:
        source_bytes = _png_bytes(record.pixels)
    else:
        try:
            source_bytes = Path(record.path or record.source).read_bytes()
        except OSError as err:
            raise ShardingError(f"cannot read {record.path}: {err.strerror}") from None
    if not source_bytes:
        raise ShardingError(f"{record.source}: empty file")
    try:
        with Image.open(io.BytesIO(source_bytes)) as image:
            image.load()
            mode, (width, height) = image.mode, image.size
            grey = np.asarray(image.convert("L"))
    except Exception as err:  # PIL raises many types for broken files
        raise ShardingError(f"{record.source}: not a decodable image ({err})") from None
    meta = {
        "md5": hashlib.md5(source_bytes).hexdigest(),
        "width": width,
        "height": height,
        "mode": mode,
        "blank": bool(grey.min() == grey.max()),
        "psnr": None,
    }
    if encoding.image_format == "png":
        return source_bytes, meta
    if encoding.image_format == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(grey).save(buffer, format="JPEG", quality=encoding.jpeg_quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
        meta["psnr"] = _psnr(grey, decoded)
        return buffer.getvalue(), meta
    side = encoding.raw_size
    resized = Image.fromarray(grey).resize((side, side), Image.BILINEAR, reducing_gap=None)
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8)).tobytes(), meta


# ----------------------------------------------------------------------------- per shard


def _add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o444
    info.mtime = 0  # byte-identical shards from identical inputs
    tar.addfile(info, io.BytesIO(payload))


def write_dali_index(tar_path: Path, index_path: Path) -> int:
    """DALI's ``v1.2`` index: per sample, ``ext offset size name`` for each component."""
    samples: list[list[str]] = []
    last_key = None
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            entry = f"{ext} {member.offset_data} {member.size} {member.name}"
            if key != last_key:
                samples.append([entry])
                last_key = key
            else:
                samples[-1].append(entry)
    index_path.write_text(f"v1.2 {len(samples)}\n" + "".join(" ".join(s) + "\n" for s in samples))
    return len(samples)


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shard_complete(tar_path: Path) -> dict | None:
    """The sidecar of a finished shard, or None if the shard must be (re)written."""
    sidecar, index = tar_path.with_suffix(".json"), tar_path.with_suffix(".idx")
    if not (tar_path.is_file() and sidecar.is_file() and index.is_file()):
        return None
    try:
        data = json.loads(sidecar.read_text())
    except json.JSONDecodeError:
        return None
    return data if data.get("bytes") == tar_path.stat().st_size else None


def _replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def write_shard(tar_path: Path, keyed: Sequence[tuple[str, Record]], encoding: Encoding) -> dict:
    """Write one shard (tar, index, sidecar) atomically; returns the sidecar contents."""
    ext = IMAGE_EXTENSIONS[encoding.image_format]
    partial = {
        s: tar_path.with_name(f".{tar_path.stem}{s}.partial") for s in (".tar", ".idx", ".json")
    }
    rows = []
    with tarfile.open(partial[".tar"], "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, record in keyed:
            image_bytes, meta = encode(record, encoding)
            _add_member(tar, f"{key}.{ext}", image_bytes)
            _add_member(tar, f"{key}.cls", str(record.label).encode())
            _add_member(tar, f"{key}.lbl", np.int32(record.label).tobytes())
            info = {"class_key": record.class_key, "source": record.source}
            _add_member(tar, f"{key}.json", json.dumps(info).encode())
            rows.append(
                asdict(
                    SampleMeta(
                        split=record.split,
                        shard=tar_path.name,
                        key=key,
                        source=record.source,
                        class_key=record.class_key,
                        label=record.label,
                        bytes=len(image_bytes),
                        **meta,
                    )
                )
            )
    write_dali_index(partial[".tar"], partial[".idx"])
    sidecar = {
        "name": tar_path.name,
        "samples": len(rows),
        "bytes": partial[".tar"].stat().st_size,
        "md5": file_md5(partial[".tar"]),
        "rows": rows,
    }
    partial[".json"].write_text(json.dumps(sidecar))
    _replace(partial[".idx"], tar_path.with_suffix(".idx"))
    _replace(partial[".json"], tar_path.with_suffix(".json"))
    _replace(partial[".tar"], tar_path)  # last: a final-named tar is always a finished one
    return sidecar


def _write_shard_job(job: tuple[str, list[tuple[str, Record]], Encoding]) -> dict:
    tar_path, keyed, encoding = job
    return write_shard(Path(tar_path), keyed, encoding)


# ----------------------------------------------------------------------------- whole dataset


def plan_splits(records: Sequence[Record], seed: int) -> dict[str, list[Record]]:
    """Records per split in a seeded order that mixes classes; independent of input order."""
    by_split: dict[str, list[Record]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.split, r.source, r.class_key)):
        by_split[record.split].append(record)
    for split, items in by_split.items():
        random.Random(f"{seed}:{split}").shuffle(items)
    return dict(by_split)


def _plan_hash(plan: dict[str, list[Record]], encoding: Encoding, per_shard: int) -> str:
    digest = hashlib.sha256(json.dumps([asdict(encoding), per_shard]).encode())
    for split in sorted(plan):
        for r in plan[split]:
            digest.update(f"{split}\t{r.source}\t{r.class_key}\t{r.label}\n".encode())
    return digest.hexdigest()[:16]


def _claim_output(out: Path, plan_hash: str, overwrite: bool) -> None:
    """Refuse to mix shards of two different plans in one directory."""
    out.mkdir(parents=True, exist_ok=True)
    plan_file = out / PLAN_FILE
    if plan_file.is_file():
        previous = json.loads(plan_file.read_text()).get("plan_hash")
        if previous != plan_hash and not overwrite:
            raise ShardingError(
                f"{out} holds shards of another input or settings (plan {previous}, now "
                f"{plan_hash}); choose a new --out or pass --overwrite"
            )
    elif any(out.iterdir()) and not overwrite:
        raise ShardingError(f"{out} is not empty and was not written by data_tools")
    tmp = out / f".{PLAN_FILE}.partial"
    tmp.write_text(json.dumps({"plan_hash": plan_hash}))
    os.replace(tmp, plan_file)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    _replace(tmp, path)


def duplicate_report(rows: Sequence[dict]) -> dict:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["md5"]].append(row)
    duplicates = [
        {
            "md5": md5,
            "sources": sorted(r["source"] for r in members),
            "classes": sorted({r["class_key"] for r in members}),
            "cross_class": len({r["class_key"] for r in members}) > 1,
            "splits": sorted({r["split"] for r in members}),
        }
        for md5, members in sorted(groups.items())
        if len(members) > 1
    ]
    blanks = sorted(r["source"] for r in rows if r["blank"])
    return {
        "samples": len(rows),
        "duplicate_groups": len(duplicates),
        "cross_class_duplicate_groups": sum(d["cross_class"] for d in duplicates),
        "cross_split_duplicate_groups": sum(len(d["splits"]) > 1 for d in duplicates),
        "blank_images": len(blanks),
        "duplicates": duplicates,
        "blanks": blanks,
    }


def write_dataset(
    out: str | Path,
    records: Sequence[Record],
    classes: Sequence[ClassInfo],
    source: str,
    encoding: Encoding = Encoding(),
    samples_per_shard: int = 1000,
    seed: int = 0,
    workers: int = 2,
    overwrite: bool = False,
) -> DatasetInfo:
    """Shard ``records`` into ``out``; see the module docstring for the guarantees."""
    if samples_per_shard < 1:
        raise ShardingError(f"--samples-per-shard must be at least 1, got {samples_per_shard}")
    if not records:
        raise ShardingError("no samples to write")
    out = Path(out)
    plan = plan_splits(records, seed)
    plan_hash = _plan_hash(plan, encoding, samples_per_shard)
    _claim_output(out, plan_hash, overwrite)

    jobs, done = [], {}
    for split, items in plan.items():
        (out / split).mkdir(exist_ok=True)
        for first in range(0, len(items), samples_per_shard):
            tar_path = out / split / f"shard-{first // samples_per_shard:06d}.tar"
            finished = shard_complete(tar_path) if not overwrite else None
            if finished is not None:
                done[str(tar_path)] = finished
                continue
            keyed = [
                (f"{split}{first + i:08d}", r)
                for i, r in enumerate(items[first : first + samples_per_shard])
            ]
            jobs.append((str(tar_path), keyed, encoding))

    desc = f"{source}: {len(jobs)} shards to write, {len(done)} already done"
    with tqdm(total=len(jobs), desc=desc, unit="shard", disable=not jobs) as bar:
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for job, sidecar in zip(jobs, pool.map(_write_shard_job, jobs), strict=True):
                    done[job[0]] = sidecar
                    bar.update()
        else:
            for job in jobs:
                done[job[0]] = _write_shard_job(job)
                bar.update()

    splits, rows = {}, []
    for split, items in plan.items():
        names = sorted(p for p in done if Path(p).parent.name == split)
        shards = [
            ShardInfo(**{k: done[p][k] for k in ("name", "samples", "bytes", "md5")}) for p in names
        ]
        splits[split] = SplitInfo(samples=len(items), shards=shards)
        for p in names:
            rows.extend(done[p]["rows"])
    psnrs = [r["psnr"] for r in rows if r.get("psnr") not in (None, float("inf"))]
    info = DatasetInfo(
        source=source,
        image_format=encoding.image_format,
        raw_size=encoding.raw_size if encoding.image_format == "raw" else None,
        jpeg_quality=encoding.jpeg_quality if encoding.image_format == "jpeg" else None,
        jpeg_psnr_db=float(np.mean(psnrs)) if psnrs else None,
        samples_per_shard=samples_per_shard,
        seed=seed,
        plan_hash=plan_hash,
        splits=splits,
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(out / MANIFEST_FILE, buffer.getvalue())
    _atomic_write(out / CLASSES_FILE, json.dumps([c.model_dump() for c in classes], indent=1))
    _atomic_write(out / REPORT_FILE, json.dumps(duplicate_report(rows), indent=1))
    _atomic_write(out / DATASET_FILE, info.model_dump_json(indent=1))  # last: marks it usable
    return info
