"""Command-line pieces every converter shares: options, error handling, the closing summary.

The sharding itself is the library's: :func:`pgnm.data.writer.write_dataset`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pgnm.data.manifest import REPORT_FILE, DatasetInfo, ValCarving
from pgnm.data.shards import Encoding, ShardingError
from pgnm.data.sources import Collected, carve_val
from pgnm.data.writer import write_dataset


def add_shard_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every converter shares."""
    parser.add_argument("--out", type=Path, required=True, help="output shard directory")
    parser.add_argument(
        "--format",
        choices=("png", "jpeg", "raw"),
        default="png",
        help="png keeps source bytes (lossless); jpeg is GPU-decodable; raw is u8",
    )
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument("--raw-size", type=int, default=256, help="side of raw u8 images")
    parser.add_argument("--samples-per-shard", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the cross-class shuffle")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--overwrite", action="store_true", help="rewrite every shard")


def convert(args: argparse.Namespace, source: str, collect: Callable[[], Collected],
            val_carving: ValCarving | None = None) -> None:
    """Collect the samples, carve a val split from train if asked, write the shards, print
    the summary.

    A :class:`ShardingError` (bad input, named in its message) becomes one line on stderr and
    exit status 2, not a traceback.
    """
    try:
        records, classes = collect()
        if val_carving is not None:
            records = carve_val(records, val_carving, str(args.src))
        info = write_dataset(
            args.out, records, classes, source,
            Encoding(args.format, args.jpeg_quality, args.raw_size),
            args.samples_per_shard, args.seed, args.workers, args.overwrite, val_carving,
        )
    except ShardingError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    report_summary(args.out, info)


def report_summary(out: Path, info: DatasetInfo) -> None:
    """Counts per split, duplicates and blanks, and the JPEG cost, in a few lines."""
    report = json.loads((out / REPORT_FILE).read_text())
    for split, s in info.splits.items():
        print(f"{split}: {s.samples} samples in {len(s.shards)} shards")
    print(
        f"duplicates: {report['duplicate_groups']} groups "
        f"({report['cross_class_duplicate_groups']} across classes, "
        f"{report['cross_split_duplicate_groups']} across splits); "
        f"blank images: {report['blank_images']} (details in {out / REPORT_FILE})"
    )
    if info.jpeg_psnr_db is not None:
        print(
            f"JPEG re-encoding at quality {info.jpeg_quality}: mean PSNR {info.jpeg_psnr_db:.2f} dB"
        )
