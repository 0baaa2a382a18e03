"""Check a shard directory end to end, with the stock readers the loaders use.

    python -m data_tools.verify DIR [--json] [--no-dali]

For every split: each shard must match its sidecar (size, md5) and the manifest; the stock
``webdataset`` library must read every sample with its image, ``cls`` and ``lbl`` components,
labels agreeing with each other and with the manifest; every image must decode; member names
must be relative and free of ``..``; every image's bit depth must be the one ``dataset.json``
records (8, or 16 for 16-bit grey PNGs); and DALI's webdataset reader, given the index files,
must return the same number of samples. Exits 1 with the list of problems, 0 when clean.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from webdataset import WebDataset

from pgnm.data.dali import dali_available
from pgnm.data.manifest import (
    MANIFEST_FILE,
    ManifestError,
    file_md5,
    load_classes,
    load_dataset_info,
    read_manifest,
)
from pgnm.data.shards import SIXTEEN_BIT_MODES, image_error


def _decode(payload: bytes, image_format: str, raw_size: int | None) -> int:
    """The image's bit depth, 8 or 16; raises if it does not decode."""
    if image_format == "raw":
        if len(payload) != (raw_size or 0) ** 2:
            raise ValueError(f"{len(payload)} bytes, expected {raw_size}x{raw_size}")
        return 8
    with Image.open(io.BytesIO(payload)) as image:
        image.load()
        return 16 if image.mode in SIXTEEN_BIT_MODES else 8


def _check_webdataset(tar: Path, ext: str, info, expected: dict[str, int]) -> tuple[int, list[str]]:  # noqa: ANN001
    problems, seen = [], 0
    try:
        for sample in WebDataset(str(tar), shardshuffle=False, empty_check=False):
            seen += 1
            key = sample["__key__"]
            where = f"{tar}: {key}"
            member = PurePosixPath(key)
            if member.is_absolute() or ".." in member.parts:
                problems.append(f"{where}: absolute or parent path in member name")
                continue
            missing = [c for c in (ext, "cls", "lbl") if c not in sample]
            if missing:
                problems.append(f"{where}: missing component(s) {', '.join(missing)}")
                continue
            label = int(np.frombuffer(sample["lbl"], "<i4")[0]) if len(sample["lbl"]) == 4 else None
            if label is None or str(label) != sample["cls"].decode().strip():
                problems.append(f"{where}: lbl and cls disagree")
            if key not in expected:
                problems.append(f"{where}: not in {MANIFEST_FILE}")
            elif expected[key] != label:
                problems.append(f"{where}: label {label}, manifest says {expected[key]}")
            try:
                depth = _decode(sample[ext], info.image_format, info.raw_size)
            except Exception as err:  # PIL raises many types
                problems.append(f"{where}: image does not decode ({image_error(err)})")
                continue
            if depth != info.bit_depth:  # a loader would scale it by the wrong maximum
                problems.append(f"{where}: {depth}-bit image, dataset.json says {info.bit_depth}")
    except Exception as err:  # a truncated or corrupt tar
        problems.append(f"{tar}: webdataset cannot read it after {seen} samples ({err})")
    return seen, problems


def _check_dali(tars: list[Path], ext: str, expected_count: int) -> list[str]:
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=64, num_threads=1, device_id=None)
    def read():  # noqa: ANN202
        image, label = fn.readers.webdataset(
            paths=[str(t) for t in tars],
            index_paths=[str(t.with_suffix(".idx")) for t in tars],
            ext=[ext, "lbl"],
            dtypes=[types.UINT8, types.INT32],
            missing_component_behavior="error",
            name="Reader",
        )
        return image, label

    try:
        pipe = read()
        pipe.build()
        size = pipe.reader_meta("Reader")["epoch_size"]
        for _ in range(-(-size // 64)):
            pipe.run()
    except Exception as err:  # DALI reports everything as RuntimeError
        return [f"{tars[0].parent}: DALI's reader fails ({str(err).splitlines()[0]})"]
    if size != expected_count:
        return [f"{tars[0].parent}: DALI counts {size} samples, the manifest {expected_count}"]
    return []


def verify(root: str | Path, use_dali: bool = True) -> dict:
    root = Path(root)
    try:
        info = load_dataset_info(root)
        classes = load_classes(root)
        rows = read_manifest(root)
    except ManifestError as err:
        return {"ok": False, "problems": [str(err)], "splits": {}}
    problems: list[str] = []
    manifest: dict[str, dict[str, int]] = defaultdict(dict)
    for row in rows:
        manifest[row.split][row.key] = row.label
        if not 0 <= row.label < len(classes):
            problems.append(
                f"{MANIFEST_FILE}: {row.key} has label {row.label} outside classes.json"
            )
    counts = {}
    ext = info.image_extension
    for split, split_info in info.splits.items():
        tars = [root / split / s.name for s in split_info.shards]
        seen = 0
        for shard, tar in zip(split_info.shards, tars, strict=True):
            if not tar.is_file() or not tar.with_suffix(".idx").is_file():
                problems.append(f"{tar}: missing (tar or index)")
                continue
            if tar.stat().st_size != shard.bytes or file_md5(tar) != shard.md5:
                problems.append(f"{tar}: size or md5 differs from {root / 'dataset.json'}")
            n, found = _check_webdataset(tar, ext, info, manifest[split])
            seen += n
            problems += found
            if n != shard.samples:
                problems.append(f"{tar}: {n} samples, dataset.json says {shard.samples}")
        if seen != split_info.samples or len(manifest[split]) != split_info.samples:
            problems.append(
                f"{split}: webdataset read {seen}, manifest lists {len(manifest[split])}, "
                f"dataset.json says {split_info.samples}"
            )
        if use_dali and tars and all(t.is_file() for t in tars):
            problems += _check_dali(tars, ext, split_info.samples)
        counts[split] = seen
    return {"ok": not problems, "problems": problems, "splits": counts, "dali": use_dali}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a directory written by a data_tools converter")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-dali", action="store_true", help="skip the DALI reader check")
    args = parser.parse_args(argv)
    result = verify(args.root, use_dali=not args.no_dali and dali_available())
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for split, count in result["splits"].items():
            print(f"{split}: {count} samples read")
        for problem in result["problems"]:
            print(f"problem: {problem}")
        print("ok" if result["ok"] else f"{len(result['problems'])} problem(s)")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
