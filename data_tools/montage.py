"""A contact sheet of a RadImageNet-shaped release: one image per class, titled by class.

    python -m data_tools.montage --src DIR --out classes.png [--per-class 1] [--max-classes 48]

The quickest check that a converted or generated release looks like what it claims to be.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from pgnm.data.sources import radimagenet_class_key  # noqa: E402


def write_montage(src: Path, out: Path, per_class: int = 1, max_classes: int = 48) -> Path:
    chosen: dict[str, list[str]] = defaultdict(list)
    with open(src / "RadiologyAI_train.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            key = radimagenet_class_key(row["filename"])[0]
            if len(chosen[key]) < per_class:
                chosen[key].append(row["filename"])
    keys = sorted(chosen)[:max_classes]
    tiles = [(key, name) for key in keys for name in chosen[key]]
    cols = min(8, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (key, name) in zip(axes.flat, tiles):
        ax.imshow(Image.open(src / name).convert("L"), cmap="gray", vmin=0, vmax=255)
        ax.set_title(key.replace("__", "/"), fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="folder with the split CSVs")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--per-class", type=int, default=1)
    parser.add_argument("--max-classes", type=int, default=48)
    args = parser.parse_args(argv)
    print(write_montage(args.src, args.out, args.per_class, args.max_classes))


if __name__ == "__main__":
    main()
