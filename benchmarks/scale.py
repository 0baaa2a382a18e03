"""Cost curves: how the data path's costs grow with the data set, measured at several sizes.

    python -m benchmarks.scale --out benchmarks/results/scale_cpu2 [--sizes 5000,20000,50000]

For each size, a synthetic RadImageNet release (224 px, all 165 classes of the real taxonomy)
is generated, sharded (1,000 samples per shard, as a RadImageNet user would), verified with
``data_tools.verify``, and its training split read for one full epoch by each loader: the
webdataset loader at ``num_workers`` 0, 2 and 4 and the DALI CPU pipeline. Measured:

* throughput (images/s) of generation, sharding and verification;
* per loader, each in a fresh process: time from construction to the first batch, images/s
  over the epoch, and the peak memory of the process tree (PSS, shared pages split between
  processes, and RSS, counted in each; sampled every few batches);
* bytes read per epoch, two ways: the webdataset loader's own count against the bytes of the
  samples it trained on (the sample spans: the tar minus its end padding), and the operating
  system's count of bytes fetched from storage (``/proc/self/io`` ``read_bytes``, page cache
  dropped for the split's tars first; reaped DataLoader workers are included) against the
  split's tar bytes. The second counts DALI's memory-mapped reads too.

Per-image costs should be flat in the size, time to first batch and memory constant; the
JSON and the plot (``scale.png``) say where they are not. One size after another, each on
freshly generated files, in one process.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

import pgnm  # noqa: F401  (makes torchvision importable on CPU-only torch)
from data_tools.radimagenet_to_wds import main as shard_release
from data_tools.verify import main as verify
from pgnm.config import DataConfig
from pgnm.data import DaliLoader, WebDatasetLoader
from pgnm.data.manifest import split_shards
from pgnm.data.spec import AugmentSpec

BATCH, CROP, SHARD_SIZE = 32, 224, 1000
WORKER_COUNTS = (0, 2, 4)
RSS_EVERY = 8  # batches between memory samples


def _storage_reads() -> int:
    """Bytes this process (and its reaped children) fetched from storage so far."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["read_bytes"])


def _memory_mb() -> tuple[float, float]:
    """(PSS, RSS) of this process and its children, in MiB."""
    pss = rss = 0
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            info = process.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        pss, rss = pss + info.pss, rss + info.rss
    return pss / 2**20, rss / 2**20


def _drop_cache(tars: list[Path]) -> None:
    for tar in tars:
        fd = os.open(tar, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_epoch(make_loader, tars: list[Path]) -> dict:
    """One full training epoch of a freshly built loader, page cache of the tars dropped.
    A first loader takes two batches and is thrown away: what a fresh process loads on first
    use (DALI's and torchvision's libraries) is then not counted as data read or as time to
    the first batch."""
    for batch, _ in enumerate(make_loader()):
        if batch == 1:
            break
    gc.collect()
    _drop_cache(tars)
    reads0, start = _storage_reads(), time.perf_counter()
    loader = make_loader()
    images, peak, first = 0, _memory_mb(), None
    for batch, (x, _labels) in enumerate(loader):
        if first is None:
            first = time.perf_counter() - start
        images += x.shape[0]
        if batch % RSS_EVERY == 0:
            peak = tuple(map(max, peak, _memory_mb()))
    wall = time.perf_counter() - start
    stored = sum(t.stat().st_size for t in tars)
    result = {
        "first_batch_s": round(first or 0.0, 3),
        "img_s": round(images / (wall - (first or 0.0)), 1),
        "images": images,
        "peak_pss_mb": round(peak[0], 1),  # shared pages split between the processes
        "peak_rss_mb": round(peak[1], 1),  # shared pages counted once per process
        "storage_read_vs_tar_bytes": round((_storage_reads() - reads0) / stored, 4),
    }
    if isinstance(loader, WebDatasetLoader):
        spans = loader.sample_bytes(loader.epoch_order(0))
        result["bytes_read_vs_sample_bytes"] = round(loader.bytes_read / spans, 6)
    return result


def measure_size(work: Path, images: int, cores: int) -> dict:
    from data_tools.synth.generate import generate_radimagenet

    release, shards = work / "release", work / "shards"
    start = time.perf_counter()
    generate_radimagenet(release, classes=None, total=images, size=CROP, seed=0,
                         workers=cores, progress=False)
    generated = time.perf_counter() - start
    out: dict = {"images": images, "generate_img_s": round(images / generated, 1)}
    start = time.perf_counter()
    shard_release(["--src", str(release), "--out", str(shards), "--samples-per-shard",
                   str(SHARD_SIZE), "--workers", str(cores)])
    sharded = time.perf_counter() - start
    out["shard_img_s"] = round(images / sharded, 1)
    shutil.rmtree(release)  # only the shards from here on: the disk holds one copy
    start = time.perf_counter()
    try:
        verify([str(shards)])
    except SystemExit as stop:
        if stop.code:
            raise RuntimeError(f"data_tools.verify found problems in {shards}") from None
    out["verify_img_s"] = round(images / (time.perf_counter() - start), 1)
    info, tars, _ = split_shards(shards, "train")
    out["train_images"], out["train_shards"] = info.splits["train"].samples, len(tars)
    out["dataset_bytes"] = sum(t.stat().st_size for t in tars)
    out["loaders"] = {}
    # "_adaptive": glibc's own mmap threshold instead of the loader's fixed one, side by side
    names = [f"webdataset_w{w}" for w in WORKER_COUNTS] + ["webdataset_w2_adaptive", "dali"]
    for name in names:
        # each in a fresh process: memory left by an earlier loader (DALI's pools, the
        # allocator's arenas) would otherwise be counted against the next one
        command = [sys.executable, "-m", "benchmarks.scale", "--epoch-of", name,
                   "--shards", str(shards)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            why = (done.stderr or done.stdout)[-3000:]
            raise RuntimeError(f"{name} on {shards} failed:\n{why}")
        out["loaders"][name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{images} images, {name}: {out['loaders'][name]}", flush=True)
    return out


def epoch_of(name: str, shards: Path) -> dict:
    """One loader's epoch over ``shards``' training split (run in its own process)."""
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(1)  # the main process only normalises; the cores go to the loaders
    _, tars, _ = split_shards(shards, "train")
    spec = AugmentSpec(image_size=CROP, eval_resize=CROP * 8 // 7)
    if name == "dali":
        return read_epoch(lambda: DaliLoader(shards, "train", BATCH, True, spec,
                                             num_threads=cores), tars)
    workers = int(name.removeprefix("webdataset_w").removesuffix("_adaptive"))
    threshold = None if name.endswith("_adaptive") else DataConfig().heap_mmap_threshold_kib
    return read_epoch(lambda: WebDatasetLoader(shards, "train", BATCH, True, spec,
                                               num_workers=workers,
                                               heap_mmap_threshold_kib=threshold), tars)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["images"] for r in results]
    names = list(results[0]["loaders"])
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    for key, label in (("generate_img_s", "generate"), ("shard_img_s", "shard"),
                       ("verify_img_s", "verify")):
        axes[0].plot(sizes, [r[key] for r in results], "o-", label=label)
    for name in names:
        axes[0].plot(sizes, [r["loaders"][name]["img_s"] for r in results], "s--", label=name)
    panels = (("first_batch_s", "time to first batch (s)"),
              ("peak_pss_mb", "peak memory, PSS of the process tree (MiB)"),
              ("storage_read_vs_tar_bytes", "storage bytes read / tar bytes, per epoch"))
    for ax, (key, title) in zip(axes[1:], panels):
        for name in names:
            ax.plot(sizes, [r["loaders"][name][key] for r in results], "o-", label=name)
        ax.set_title(title)
    axes[0].set_title("throughput (images/s)")
    axes[3].set_ylim(0, 1.2)
    for ax in axes:
        ax.set_xlabel("images in the data set")
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    fig.suptitle("pgnm data path at growing sizes (synthetic RadImageNet, 224 px, 165 classes)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for scale.json and scale.png")
    parser.add_argument("--sizes", default="5000,20000,50000", help="images per data set")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--epoch-of", help=argparse.SUPPRESS)  # one loader, in a subprocess
    parser.add_argument("--shards", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epoch_of:
        print(json.dumps(epoch_of(args.epoch_of, args.shards)))
        return
    if args.out is None:
        parser.error("--out is required")
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(1)  # the main process only normalises; the cores go to the loaders
    results, load_start = [], os.getloadavg()[0]
    for size in (int(s) for s in args.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix="pgnm-scale-", dir=args.work))
        try:
            results.append(measure_size(work, size, cores))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"cores": cores, "cpu": _cpu_name(), "memory_gib": round(
        psutil.virtual_memory().total / 2**30, 1), "batch": BATCH, "crop": CROP,
        "samples_per_shard": SHARD_SIZE, "commit": _commit(), "load_average_start_end": [
            round(load_start, 2), round(os.getloadavg()[0], 2)]}
    (args.out / "scale.json").write_text(json.dumps({"machine": machine, "sizes": results},
                                                    indent=1))
    plot(results, args.out / "scale.png")
    print(f"wrote {args.out / 'scale.json'} and scale.png")


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() or "unknown"


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
