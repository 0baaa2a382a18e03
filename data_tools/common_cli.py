"""Command-line pieces every converter shares: options, error handling, the closing summary."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from data_tools.common import Encoding, ShardingError
from pgnm.data.manifest import REPORT_FILE, DatasetInfo


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


def encoding_from(args: argparse.Namespace) -> Encoding:
    return Encoding(args.format, args.jpeg_quality, args.raw_size)


def run_converter(main_body: Callable[[], None]) -> None:
    """Turn :class:`ShardingError` into a one-line message and exit status 2, no traceback."""
    try:
        main_body()
    except ShardingError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


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
