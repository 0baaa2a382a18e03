"""Shard a RadImageNet release into WebDataset tars.

    python -m data_tools.radimagenet_to_wds --src DIR --out DIR [--format png|jpeg|raw]

``--src`` holds ``radiology_ai/`` and ``RadiologyAI_{train,val,test}.csv`` (``filename,label``,
filenames relative to ``--src``). The class of a sample comes from its path, never from a list:

    radiology_ai/CT/abd/liver_lesion/abd001234.png  ->  CT__abd__liver_lesion
    radiology_ai/US/thyroid/usn418235.png           ->  US__thyroid

Folder names are kept exactly (``Nodule``, ``ca++_tendinosis``, ``achilles_pathology_``).
The CSV ``label`` column is treated as opaque; a label that maps to more than one path-derived
class is reported as a warning, not an error. The reader is
:func:`pgnm.data.sources.records_from_radimagenet`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_tools.common_cli import add_shard_arguments, convert
from pgnm.data.sources import Collected, records_from_radimagenet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--src",
        type=Path,
        required=True,
        help="folder holding radiology_ai/ and RadiologyAI_{train,val,test}.csv",
    )
    add_shard_arguments(parser)
    args = parser.parse_args(argv)

    def collect_and_warn() -> Collected:
        records, classes, warnings = records_from_radimagenet(args.src)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return records, classes

    convert(args, "radimagenet_to_wds", collect_and_warn)


if __name__ == "__main__":
    main()
