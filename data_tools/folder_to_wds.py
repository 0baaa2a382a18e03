"""Shard a folder-per-class image set (a downstream or few-shot task) into WebDataset tars.

    python -m data_tools.folder_to_wds --src DIR --out DIR [--format png|jpeg|raw]

``--src`` is either ``<split>/<class>/<image>`` (splits named train, val, test) or just
``<class>/<image>``, which becomes the ``train`` split. Classes are the folder names, sorted,
kept exactly as written (``NORMAL``, ``benign``, ``glioma``). Hidden files are ignored; any
other file that is not an image is an error naming it. The reader is
:func:`pgnm.data.sources.records_from_folder`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data_tools.common_cli import add_shard_arguments, convert
from pgnm.data.sources import records_from_folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="folder of class folders")
    add_shard_arguments(parser)
    args = parser.parse_args(argv)

    convert(args, "folder_to_wds", lambda: records_from_folder(args.src))


if __name__ == "__main__":
    main()
