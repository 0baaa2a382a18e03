"""Shard a MedMNIST-format ``.npz`` (the six-key layout, any image size) into WebDataset tars.

    python -m data_tools.medmnist_to_wds --src organamnist_224.npz --out DIR [--classes a,b,...]

The file holds ``{train,val,test}_images`` (uint8, (N, H, W) or (N, H, W, 3)) and
``{train,val,test}_labels`` (integers, (N, 1) or (N,)). Multi-label sets (ChestMNIST's
(N, 14) labels) are refused: pgnm trains single-label classifiers. Images are written as PNG
(lossless) unless ``--format`` says otherwise. The arrays are read into memory once (a 224-px
OrganAMNIST is about 3 GB), and each worker process receives only its shard's images. The
reader is :func:`pgnm.data.sources.records_from_medmnist`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data_tools.common_cli import add_shard_arguments, convert
from pgnm.data.sources import records_from_medmnist


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="MedMNIST-format .npz file")
    parser.add_argument("--classes", help="comma-separated class names, in label order")
    add_shard_arguments(parser)
    args = parser.parse_args(argv)

    names = args.classes.split(",") if args.classes else None
    convert(args, "medmnist_to_wds", lambda: records_from_medmnist(args.src, names))


if __name__ == "__main__":
    main()
