"""Data-loading throughput, side by side in one run, on the same generated images.

    python -m benchmarks.data --json PATH [--src RELEASE] [--images 768] [--size 256]

Measured (training augmentation, batch 32, 224-px crops, all cores of this machine):

* ``dali``: our DALI loader, CPU-only pipeline (``device_id=None``), reading PNG shards;
* ``webdataset``: our webdataset loader over the same shards;
* ``reference``: the official recipe -- torchvision ``ImageFolder`` + PIL + torchvision
  transforms in a ``DataLoader`` (RandomResizedCrop, flip, tensor, normalise);
* ``decode_only``: one core doing nothing but decoding the same PNGs to grey arrays, the floor
  every loader pays per image.

Each loader gets one warm-up epoch, then ``--epochs`` timed epochs; the JSON holds images/s,
CPU milliseconds per image (this process and its workers), resident memory after each epoch,
and the ratios the project tracks (DALI vs reference, DALI per core vs the decode floor).
Without ``--src`` a synthetic release is generated first; sharding throughput is reported too.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image

import pgnm  # noqa: F401  (makes torchvision importable on CPU-only torch)
from benchmarks.reference_recipe import reference_loader
from data_tools.radimagenet_to_wds import main as shard_release
from pgnm.data import DaliLoader, WebDatasetLoader
from pgnm.data.spec import AugmentSpec

MEAN, STD = 0.3162, 0.3213


def _cpu_seconds() -> float:
    """CPU time of this process and all its live children (DataLoader workers, DALI threads)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def _rss_mb() -> float:
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def time_epochs(make_iter, epochs: int) -> dict:
    """img/s and CPU-ms/img over ``epochs`` timed epochs, after one untimed warm-up epoch."""
    for _ in make_iter():
        pass
    images, rss = 0, []
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    for _ in range(epochs):
        for batch, _labels in make_iter():
            images += batch.shape[0]
        batch = _labels = None  # the last batch is not a leak
        gc.collect()  # count what is still referenced, not garbage awaiting the collector
        rss.append(round(_rss_mb(), 1))
    wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    return {
        "img_s": images / wall,
        "cpu_ms_per_img": 1000 * cpu / max(images, 1),
        "images": images,
        "rss_mb_per_epoch": rss,
    }


def image_folder_view(release: Path, out: Path) -> Path:
    """train/<class>/<file> symlinks over the raw release: the layout ImageFolder reads."""
    import csv

    from pgnm.data.sources import radimagenet_class_key

    with open(release / "RadiologyAI_train.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            link = out / radimagenet_class_key(row["filename"])[0] / Path(row["filename"]).name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to((release / row["filename"]).resolve())
    return out


def decode_only(files: list[Path], repeats: int) -> dict:
    payloads = [f.read_bytes() for f in files]  # from memory: decoding alone, no file system
    start = time.perf_counter()
    for _ in range(repeats):
        for payload in payloads:
            with Image.open(io.BytesIO(payload)) as image:
                np.asarray(image.convert("L"))
    rate = repeats * len(payloads) / (time.perf_counter() - start)
    return {"img_s": rate, "cpu_ms_per_img": 1000 / rate}


def shard(release: Path, shards: Path, cores: int) -> float:
    """Convert the raw release into shards with data_tools; returns images/s."""
    start = time.perf_counter()
    shard_release(
        ["--src", str(release), "--out", str(shards), "--samples-per-shard", "128",
         "--workers", str(cores)]
    )  # fmt: skip
    with open(shards / "manifest.csv") as handle:
        rows = sum(1 for _ in handle) - 1
    return rows / (time.perf_counter() - start)


def time_loaders(
    release: Path, shards: Path, work: Path, batch: int, epochs: int, cores: int, size: int = 224
) -> dict:
    """Every loader over the same images, one after another; ratios computed within the run."""
    result: dict = {}
    spec = AugmentSpec(image_size=size, eval_resize=size * 8 // 7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the main process only normalises; leave the cores to loaders
    try:
        dali = DaliLoader(shards, "train", batch, True, spec, num_threads=cores)
        result["dali"] = time_epochs(lambda: iter(dali), epochs)
        wds = WebDatasetLoader(shards, "train", batch, True, spec, num_workers=cores)
        result["webdataset"] = time_epochs(lambda: iter(wds), epochs)
        folder = image_folder_view(release, work / "imagefolder")
        reference = reference_loader(folder, batch, cores, size)
        result["reference"] = time_epochs(lambda: iter(reference), epochs)
        result["decode_only"] = decode_only(sorted(folder.rglob("*.png")), repeats=2)
    finally:
        torch.set_num_threads(threads)
    for name in ("dali", "webdataset", "reference", "decode_only"):
        result[f"{name}_img_s"] = round(result[name]["img_s"], 1)
    result["dali_vs_reference"] = result["dali"]["img_s"] / result["reference"]["img_s"]
    result["webdataset_vs_reference"] = result["webdataset"]["img_s"] / result["reference"]["img_s"]
    result["dali_per_core_vs_decode_only"] = (
        result["dali"]["img_s"] / cores / result["decode_only"]["img_s"]
    )
    result["goals"] = {
        "dali_at_least_2x_reference": result["dali_vs_reference"] >= 2.0,
        "dali_per_core_at_least_0.7x_decode_only": result["dali_per_core_vs_decode_only"] >= 0.7,
    }
    return result


def generate_release(out: Path, classes: int, images: int, size: int, cores: int) -> Path:
    from data_tools.synth.generate import generate_radimagenet

    generate_radimagenet(
        out, classes=classes, total=images, size=size, seed=0, workers=cores, progress=False
    )
    return out


def run(args: argparse.Namespace) -> dict:
    cores = len(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="pgnm-bench-data-"))
    try:
        release = args.src or generate_release(
            work / "release", args.classes, args.images, args.size, cores
        )
        result: dict = {"cores": cores, "batch": args.batch, "crop": 224, "epochs": args.epochs}
        result["shard_img_s"] = shard(release, work / "shards", cores)
        result.update(time_loaders(release, work / "shards", work, args.batch, args.epochs, cores))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--src", type=Path, help="a RadImageNet-shaped release (default: generate)")
    parser.add_argument("--images", type=int, default=768, help="images to generate")
    parser.add_argument("--classes", type=int, default=24, help="classes to generate")
    parser.add_argument("--size", type=int, default=256, help="side of generated images")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per loader")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args(argv)
    result = run(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=1))


if __name__ == "__main__":
    main()
