"""Shard a folder-per-class image set (a downstream or few-shot task) into WebDataset tars.

    python -m data_tools.folder_to_wds --src DIR --out DIR [--format png|jpeg|raw]
                                       [--val-fraction F]

``--src`` is either ``<split>/<class>/<image>`` (splits named train, val, test) or just
``<class>/<image>``, which becomes the ``train`` split. Classes are the folder names, sorted,
kept exactly as written (``NORMAL``, ``benign``, ``glioma``). Hidden files are ignored; any
other file that is not an image is an error naming it. The reader is
:func:`pgnm.data.sources.records_from_folder`.

``--val-fraction F`` carves a ``val`` split out of ``train`` for sets shipped with train/ and
test/ only (BUSI and most Kaggle-style sets): F of each class's training samples, drawn with
``--seed``, recorded as ``val_carved`` in ``dataset.json``
(:func:`pgnm.data.sources.carve_val`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data_tools.common_cli import add_shard_arguments, convert
from pgnm.data.manifest import ValCarving
from pgnm.data.sources import records_from_folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="folder of class folders")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="carve this fraction of each class's train samples into val")
    add_shard_arguments(parser)
    args = parser.parse_args(argv)

    carving = (None if args.val_fraction is None
               else ValCarving(fraction=args.val_fraction, seed=args.seed))
    convert(args, "folder_to_wds", lambda: records_from_folder(args.src), carving)


if __name__ == "__main__":
    main()
