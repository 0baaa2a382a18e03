"""Shard a folder of DICOM files into WebDataset tars: windowed 8-bit grey, or 16-bit values.

    python -m data_tools.dicom_to_wds --src DIR --out DIR [--labels CSV] [--window NAME]
        [--percentiles LOW HIGH] [--frames middle|all] [--bit-depth 8|16] [--format ...]

Labels come from ``--labels`` (a CSV ``path,label`` with an optional ``split`` column, paths
relative to ``--src``) or, without it, from class folders as in ``folder_to_wds``
(``<split>/<class>/<file>`` or ``<class>/<file>``; every visible file must be DICOM).

8-bit (default): the file's VOI LUT or window, else a percentile window (``--percentiles``,
default 0.5 99.5); ``--window brain|subdural|lung|mediastinum|abdomen|liver|bone|soft_tissue``
windows CT files with that preset, ``--window percentile`` every file by percentiles. 16-bit:
the modality values (CT: HU) plus ``value_offset`` (32768 for signed data), as 16-bit PNGs;
``dataset.json`` records ``bit_depth`` and ``value_offset``. Files whose pixels cannot be
decoded here, or that have none, are skipped: one line each, counted at the end. The reader is
:func:`pgnm.data.dicom.records_from_dicom`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data_tools.common_cli import add_shard_arguments, convert
from pgnm.data.dicom import DicomOptions, DicomReport, Frames, Window, records_from_dicom


def print_report(report: DicomReport) -> None:
    if not report.files:  # stopped while listing the files: the error says why
        return
    for skipped in report.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}")
    print(f"DICOM: {report.files} files read, {len(report.skipped)} skipped")
    if report.clipped:
        print(f"16-bit: {len(report.clipped)} samples had values outside 0..65535 after the "
              f"offset, clipped (e.g. {report.clipped[0]})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="folder of DICOM files")
    parser.add_argument("--labels", type=Path, help="CSV path,label[,split]; default: folders")
    parser.add_argument("--window", choices=[w.value for w in Window], default="file")
    parser.add_argument("--percentiles", type=float, nargs=2, default=(0.5, 99.5),
                        metavar=("LOW", "HIGH"), help="percentile window: shown as 0 and 255")
    parser.add_argument("--frames", choices=[f.value for f in Frames], default="middle")
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), default=8)
    add_shard_arguments(parser)
    args = parser.parse_args(argv)
    if args.bit_depth == 16 and args.format != "png":
        parser.error("--bit-depth 16 needs --format png (jpeg and raw store 8 bits)")
    try:
        options = DicomOptions(Window(args.window), tuple(args.percentiles),
                               Frames(args.frames), args.bit_depth)
    except ValueError as err:
        parser.error(str(err))

    report = DicomReport()
    try:
        convert(args, "dicom_to_wds",
                lambda: records_from_dicom(args.src, args.labels, options, report))
    finally:  # also when nothing could be written: the skips are usually why
        print_report(report)


if __name__ == "__main__":
    main()
