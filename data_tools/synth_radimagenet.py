"""Synthetic RadImageNet-like release for tests and benchmarks.

Writes the raw release layout (``radiology_ai/{CT,MR,US}/...``), the three split CSVs and
``synthetic_meta.json``; optionally MedMNIST-format npz files and folder-per-class
downstream sets next to it::

    python -m data_tools.synth_radimagenet --out /data/synth --classes 30 \\
        --images-per-class 200 --size 64 --workers 2 --balanced
    python -m data_tools.synth_radimagenet --out /data/synth --total 13500 --realism \\
        --medmnist-npz organamnist --medmnist-npz breastmnist --sizes 28,64 \\
        --downstream busi --downstream brain_tumor

The same arguments always give byte-identical files, whatever ``--workers`` is.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from pathlib import Path

from data_tools.synth import (
    FOLDER_PRESETS,
    NPZ_PRESETS,
    REALISM_ON,
    CompanionError,
    GeneratorError,
    Realism,
    TaxonomyError,
    generate_radimagenet,
    write_folder_dataset,
    write_medmnist_npz,
)
from data_tools.synth.generate import check_output_dir, record_companions


def _floats(text: str, n: int, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: expected {n} comma-separated numbers") from None
    if len(values) != n:
        raise argparse.ArgumentTypeError(f"{name}: expected {n} comma-separated numbers")
    return values


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: expected comma-separated integers") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data_tools.synth_radimagenet",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output directory (new, empty, "
                   "or an earlier output of this generator)")
    what = p.add_argument_group("classes and counts")
    what.add_argument("--classes", type=int, default=None,
                      help="render a deterministic subset of N classes (spans CT, MR and US "
                      "when N >= 3); default: the whole taxonomy (165)")
    what.add_argument("--taxonomy", type=Path, default=None,
                      help="JSON list of 'MOD/organ/class' and 'US/organ' entries")
    count = what.add_mutually_exclusive_group()
    count.add_argument("--images-per-class", type=int, default=None,
                       help="mean images per class (exact with --balanced); default 10")
    count.add_argument("--total", type=int, default=None, help="total images, long-tailed")
    count.add_argument("--scale", type=float, default=None,
                       help=f"total as a fraction of the real release ({REAL_SIZE:,} images)")
    what.add_argument("--balanced", action="store_true", help="same count for every class")
    what.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    img = p.add_argument_group("images")
    img.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    img.add_argument("--rgb", action="store_true", help="3 identical channels instead of L")
    img.add_argument("--cnr-range", type=lambda t: _floats(t, 2, "--cnr-range"), default=None,
                     help="lesion contrast-to-noise range LO,HI, the difficulty (default 1.25,5)")
    img.add_argument("--distractor-rate", type=float, default=None,
                     help="benign blobs in any class (default 0.3)")
    img.add_argument("--us-text-rate", type=float, default=None,
                     help="burned-in annotation in US images (default 0.3)")
    img.add_argument("--sequence-mix", type=float, default=None,
                     help="fraction of T2-weighted MR (default 0.5)")
    spl = p.add_argument_group("splits")
    spl.add_argument("--split-like-real", action="store_true", help="0.88/0.04/0.08")
    spl.add_argument("--split", type=lambda t: _floats(t, 3, "--split"), default=None,
                     help="TRAIN,VAL,TEST ratios (default 0.75,0.10,0.15)")
    spl.add_argument("--max-patient-images", type=int, default=8,
                     help="largest synthetic patient (default 8 images)")
    real = p.add_argument_group("realism (defects of the real release)")
    real.add_argument("--realism", action="store_true",
                      help=f"turn on the defects at the spec's rates {asdict(REALISM_ON)}")
    for name in ("dup-cross-class-rate", "near-dup-rate", "blank-rate", "label-noise"):
        real.add_argument(f"--{name}", type=float, default=None)
    comp = p.add_argument_group("companion outputs")
    comp.add_argument("--medmnist-npz", action="append", default=[], metavar="FLAG",
                      help=f"MedMNIST-format set (repeatable): {', '.join(NPZ_PRESETS)}")
    comp.add_argument("--sizes", type=lambda t: _ints(t, "--sizes"), default=(28,),
                      help="npz sizes, e.g. 28,64,128,224 (default 28)")
    comp.add_argument("--npz-scale", type=float, default=0.02,
                      help="fraction of the official MedMNIST counts (default 0.02)")
    comp.add_argument("--npz-counts", type=lambda t: _ints(t, "--npz-counts"), default=None,
                      help="TRAIN,VAL,TEST image counts (overrides --npz-scale)")
    comp.add_argument("--downstream", action="append", default=[], metavar="NAME",
                      help=f"folder-per-class set (repeatable): {', '.join(FOLDER_PRESETS)}")
    comp.add_argument("--downstream-per-class", type=lambda t: _ints(t, "--downstream-per-class"),
                      default=(20, 5, 5), help="N or TRAIN,VAL,TEST images per class "
                      "(default 20,5,5)")
    comp.add_argument("--no-radimagenet", action="store_true",
                      help="write only the companion outputs")
    run = p.add_argument_group("run")
    run.add_argument("--workers", type=int, default=1, help="rendering processes (default 1)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an earlier output of this generator made with other settings")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


REAL_SIZE = 1_350_000  # images in the real RadImageNet release (Mei et al., Radiology: AI 2022)


def _realism(args: argparse.Namespace) -> Realism:
    base = REALISM_ON if args.realism else Realism()
    overrides = {k: getattr(args, k) for k in asdict(base) if getattr(args, k) is not None}
    return replace(base, **overrides)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.scale is not None:
        if not 0 < args.scale <= 1:
            parser.error("--scale must be in (0, 1]")
        args.total = max(1, round(args.scale * REAL_SIZE))
    render_options = {k: getattr(args, k) for k in
                      ("cnr_range", "distractor_rate", "us_text_rate", "sequence_mix")
                      if getattr(args, k) is not None}
    try:
        if not args.no_radimagenet:
            meta = generate_radimagenet(
                args.out, classes=args.classes, taxonomy=args.taxonomy,
                images_per_class=args.images_per_class, total=args.total, size=args.size,
                seed=args.seed, workers=args.workers, realism=_realism(args),
                balanced=args.balanced, rgb=args.rgb, split=args.split,
                split_like_real=args.split_like_real,
                max_patient_images=args.max_patient_images, render_options=render_options,
                overwrite=args.overwrite, progress=not args.quiet)
            totals = meta["totals"]
            print(f"wrote {totals['files']} images in {len(meta['classes'])} classes to "
                  f"{args.out} (train {totals['train']}, val {totals['val']}, "
                  f"test {totals['test']})")
        elif args.medmnist_npz or args.downstream:
            check_output_dir(args.out)
        else:
            parser.error("--no-radimagenet needs --medmnist-npz or --downstream")
        written: list[str] = []
        for flag in args.medmnist_npz:
            paths = write_medmnist_npz(args.out, flag, sizes=args.sizes, counts=args.npz_counts,
                                       scale=args.npz_scale, seed=args.seed, rgb=args.rgb)
            written += [p.name for p in paths]
        for name in args.downstream:
            per_class = args.downstream_per_class
            if len(per_class) == 1:
                per_class = per_class[0]
            elif len(per_class) != 3:
                parser.error("--downstream-per-class takes N or TRAIN,VAL,TEST")
            root = write_folder_dataset(args.out, name, per_class=per_class, size=args.size,
                                        seed=args.seed, rgb=args.rgb)
            written.append(root.name)
        if written:
            record_companions(args.out, written)
            print(f"wrote companion outputs: {', '.join(written)}")
    except (GeneratorError, TaxonomyError, CompanionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
