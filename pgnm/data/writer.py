"""Writing a whole shard directory from a list of samples: what every converter shares.

A converter lists its samples as :class:`~pgnm.data.shards.Record`\\ s (where the image is,
its class; :mod:`pgnm.data.sources` has the readers of the supported sources) and calls
:func:`write_dataset`. That function

* shuffles each split across classes with a seeded permutation (DALI and webdataset only
  shuffle inside a small buffer, so class-ordered tars would give class-ordered batches);
* cuts it into shards of a fixed sample count and writes them in parallel worker processes;
* writes each shard atomically (:func:`~pgnm.data.shards.write_shard`): the tar, its DALI
  index and its sidecar JSON are built under temporary names and renamed into place, the tar
  last, so a killed run never leaves a half-written shard under a final name;
* on a re-run with the same inputs and settings, skips shards whose sidecar matches the tar;
* writes ``dataset.json``, ``classes.json``, ``manifest.csv`` and ``report.json`` (duplicates
  and blank images) — see :mod:`pgnm.data.manifest` for the layout.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pgnm.atomic import atomic_write
from pgnm.data.manifest import (
    CLASSES_FILE,
    DATASET_FILE,
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    REPORT_FILE,
    ClassInfo,
    DatasetInfo,
    ShardInfo,
    SplitInfo,
    ValCarving,
)
from pgnm.data.shards import (
    SIXTEEN_BIT_MODES,
    Encoding,
    Record,
    ShardingError,
    shard_complete,
    write_shard,
)

PLAN_FILE = "plan.json"


def _write_shard_job(job: tuple[str, list[tuple[str, Record]], Encoding]) -> dict:
    tar_path, keyed, encoding = job
    return write_shard(Path(tar_path), keyed, encoding)


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
            # rendering only when set: the plans of every source without one hash as before
            rendering = f"\t{r.rendering}" if r.rendering else ""
            digest.update(f"{split}\t{r.source}\t{r.class_key}\t{r.label}{rendering}\n".encode())
    return digest.hexdigest()[:16]


def _value_offset(records: Sequence[Record]) -> int:
    offsets = sorted({r.value_offset for r in records})
    if len(offsets) > 1:
        raise ShardingError(f"the samples have different value offsets {offsets}: a shard "
                            f"directory has one (dataset.json value_offset)")
    return offsets[0]


def _bit_depth(rows: Sequence[dict]) -> int:
    """8 or 16, from the modes of the stored images: loaders scale by it, so one set must not
    mix them (a folder of 8- and 16-bit PNGs is refused, naming one of each)."""
    sixteen = [r["source"] for r in rows if r["mode"] in SIXTEEN_BIT_MODES]
    if not sixteen:
        return 8
    eight = [r["source"] for r in rows if r["mode"] not in SIXTEEN_BIT_MODES]
    if eight:
        raise ShardingError(f"8-bit and 16-bit images mixed (e.g. {eight[0]} and {sixteen[0]} "
                            f"(16-bit)): convert them to one bit depth")
    return 16


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
    atomic_write(plan_file, json.dumps({"plan_hash": plan_hash}))


def duplicate_report(rows: Sequence[dict]) -> dict:
    """Groups of identical source images (by md5) and blank images, from manifest rows."""
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
    val_carved: ValCarving | None = None,
) -> DatasetInfo:
    """Shard ``records`` into ``out``; see the module docstring for the guarantees.
    ``val_carved``: how the records' val split was carved from train (recorded as given)."""
    if samples_per_shard < 1:
        raise ShardingError(f"--samples-per-shard must be at least 1, got {samples_per_shard}")
    if not records:
        raise ShardingError("no samples to write")
    out = Path(out)
    value_offset = _value_offset(records)
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
        bit_depth=_bit_depth(rows),
        value_offset=value_offset,
        val_carved=val_carved,
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / MANIFEST_FILE, buffer.getvalue())
    atomic_write(out / CLASSES_FILE, json.dumps([c.model_dump() for c in classes], indent=1))
    atomic_write(out / REPORT_FILE, json.dumps(duplicate_report(rows), indent=1))
    atomic_write(out / DATASET_FILE, info.model_dump_json(indent=1))  # last: marks it usable
    return info
