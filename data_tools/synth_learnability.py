"""Is the synthetic class signal learnable but not trivial? Train a small CNN and report.

Reads a generated release through its CSVs (the same way a converter would: modality and
organ from the path, the label as an opaque string), trains a 4-block CNN (BatchNorm, Adam)
on the train split at a small size and evaluates on the test split::

    python -m data_tools.synth_learnability --data /tmp/synth --size 64 --epochs 10

Reported: top-1, chance (1/K), majority-class rate, balanced accuracy, modality and organ
accuracy (is the predicted class in the right modality/organ?) and the spread of per-class
recall. The generator aims at a top-1 well above chance but below ~0.9: learnable, not trivial.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn


def load_split(root: Path, split: str, size: int) -> tuple[np.ndarray, list[str], list[str]]:
    """(images uint8 (N, size, size), labels, filenames) of one split."""
    path = root / f"RadiologyAI_{split}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no split CSV (is --data a generated release?)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = np.zeros((len(rows), size, size), np.uint8)
    for i, row in enumerate(rows):
        with Image.open(root / row["filename"]) as im:
            im = im.convert("L")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            images[i] = np.asarray(im)
    return images, [r["label"] for r in rows], [r["filename"] for r in rows]


def small_cnn(n_classes: int, widths: tuple[int, ...] = (16, 32, 64, 64)) -> nn.Module:
    layers: list[nn.Module] = []
    channels = 1
    for w in widths:
        layers += [nn.Conv2d(channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        channels = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, n_classes)]
    return nn.Sequential(*layers)


def _group(filename: str, level: int) -> str:
    """Modality (level 1) or modality/organ (level 2) from radiology_ai/MOD/organ/..."""
    return "/".join(filename.split("/")[1:1 + level])


def evaluate_learnability(data: str | Path, size: int = 64, epochs: int = 10,
                          batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                          threads: int = 2, eval_split: str = "test",
                          verbose: bool = True) -> dict:
    """Train on ``train``, evaluate on ``eval_split``; returns the report dictionary."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    root = Path(data)
    x_train, y_train, _ = load_split(root, "train", size)
    x_eval, y_eval, f_eval = load_split(root, eval_split, size)
    classes = sorted(set(y_train) | set(y_eval))
    index = {c: i for i, c in enumerate(classes)}
    # Each class's folder, for the modality/organ of a *predicted* class.
    folder_of = {}
    for split in ("train", eval_split):
        with open(root / f"RadiologyAI_{split}.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                folder_of.setdefault(row["label"], row["filename"])

    def tensor(x: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(x).float().unsqueeze(1) / 255.0 - 0.5) / 0.25

    xt, yt = tensor(x_train), torch.tensor([index[c] for c in y_train])
    xe = tensor(x_eval)
    model = small_cnn(len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:
                continue
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: train loss {total / len(xt):.3f}", flush=True)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xe[i:i + 256]).argmax(1) for i in range(0, len(xe), 256)])
    pred_labels = [classes[int(p)] for p in pred]
    correct = np.array([p == t for p, t in zip(pred_labels, y_eval)])
    recalls = {c: float(correct[[t == c for t in y_eval]].mean())
               for c in classes if c in set(y_eval)}
    same = {level: float(np.mean([_group(folder_of[p], level) == _group(f, level)
                                  for p, f in zip(pred_labels, f_eval)])) for level in (1, 2)}
    counts = np.unique(y_eval, return_counts=True)[1]
    values = np.array(list(recalls.values()))
    return {
        "data": str(root), "classes": len(classes), "train_images": len(xt),
        "eval_images": len(xe), "eval_split": eval_split, "size": size, "epochs": epochs,
        "top1": float(correct.mean()), "chance": 1.0 / len(classes),
        "majority": float(counts.max() / counts.sum()),
        "balanced_accuracy": float(values.mean()),
        "modality_accuracy": same[1], "organ_accuracy": same[2],
        "recall_min": float(values.min()), "recall_median": float(np.median(values)),
        "recall_max": float(values.max()), "recall_std": float(values.std()),
        "per_class_recall": dict(sorted(recalls.items())),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_tools.synth_learnability",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="a generated release directory")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-split", default="test", choices=("val", "test"))
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = p.parse_args(argv)
    try:
        report = evaluate_learnability(args.data, args.size, args.epochs, args.batch_size,
                                       args.lr, args.seed, args.threads, args.eval_split)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in report.items() if k != "per_class_recall"}
    print(json.dumps(summary, indent=1))
    for label, r in report["per_class_recall"].items():
        print(f"  {r:5.2f}  {label}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
