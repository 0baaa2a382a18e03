"""Every benchmark in one process tree, on the same generated data: JSON, tables and plots.

    python -m benchmarks.run_all --out DIR [--quick] [--threads N]

In order: generate a synthetic RadImageNet release; shard it (sharding throughput); data
loading (DALI, webdataset, the reference ImageFolder loader, the decode floor) with resident
memory per epoch; the mask op; the training step (ours: baseline, PGNM, light PGNM; the
reference recipe: baseline, PGNM) for each backbone; end-to-end pretraining images/s, ours vs
the reference. Every ratio is the quotient of two numbers measured in this run.

Writes ``DIR/results.json`` (machine description, every number, every ratio with its goal),
``DIR/results.md`` and PNG plots. ``--quick`` uses tiny sizes, for CI smoke tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from tqdm import tqdm

import pgnm  # noqa: F401  (makes torchvision importable on CPU-only torch)
from benchmarks import data, mask, pretrain, report, step

FULL = dict(
    images=384, classes=24, gen_size=256, crop=224, batch=16, grid=64, light_size=64,
    backbones=("resnet18", "resnet50"), step_repeats=7, step_warmup=2,
    loader_batch=32, loader_epochs=12, mask_batch=32, mask_repeats=20, mask_warmup=3,
    pretrain_arch="resnet18", pretrain_epochs=1, pretrain_warmup=2,
)  # fmt: skip
QUICK = dict(
    images=40, classes=6, gen_size=72, crop=64, batch=4, grid=16, light_size=32,
    backbones=("resnet10t", "resnet18"), step_repeats=2, step_warmup=1,
    loader_batch=4, loader_epochs=3, mask_batch=4, mask_repeats=3, mask_warmup=1,
    pretrain_arch="resnet10t", pretrain_epochs=1, pretrain_warmup=1,
)  # fmt: skip
# Loader memory counts as flat when a least-squares line through RSS per epoch, over the second
# half of the epochs, rises by less than this much per epoch. The first epochs are the allocator
# settling (glibc arenas grow and later shrink again by tens of MB); a leak grows throughout,
# so the second half still shows it. A leak of one batch per epoch is about 6 MB.
FLAT_MB_PER_EPOCH = 2.0


def machine(threads: int) -> dict:
    def version(name: str) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed

        for dist in (name, f"{name}-cuda120", f"{name}-cuda130"):
            try:
                return installed(dist)
            except PackageNotFoundError:
                continue
        return "not installed"

    cpu, flags = platform.processor() or "unknown", []
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        found = next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags"))
        # what oneDNN's convolutions depend on: the same model name has come with and without
        flags = sorted(f for f in found if f.startswith(("avx2", "avx512", "amx")))
    except (OSError, StopIteration):
        pass
    return {
        "cpu_model": cpu,
        "cpu_vector_flags": flags,
        "machine": platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": version("timm"),
        "dali": version("nvidia-dali"),
        "deepspeed": version("deepspeed"),
        "torch_threads": threads,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_start": list(os.getloadavg()),
    }


def ratio(numerator: tuple[str, float], denominator: tuple[str, float], goal: str | None) -> dict:
    """numerator / denominator, with the goal (``<= x`` or ``>= x``) it is held to, if any."""
    value = numerator[1] / denominator[1]
    passed = None
    if goal is not None:
        op, bound = goal.split()
        passed = value <= float(bound) if op == "<=" else value >= float(bound)
    return {
        "numerator": numerator[0],
        "denominator": denominator[0],
        "numerator_value": numerator[1],
        "denominator_value": denominator[1],
        "value": value,
        "goal": goal,
        "pass": passed,
    }


def memory_record(rss: list[float]) -> dict:
    settled = rss[len(rss) // 2 :]
    slope = float(np.polyfit(np.arange(len(settled)), settled, 1)[0]) if len(settled) > 1 else 0.0
    return {"rss_mb": rss, "slope_mb_per_epoch": slope, "flat": slope < FLAT_MB_PER_EPOCH}


def all_ratios(result: dict) -> dict:
    ratios = {}
    for arch, s in result["steps"].items():

        def ms(name: str, arch: str = arch, s: dict = s) -> tuple[str, float]:
            return f"steps.{arch}.{name}.median_ms", s[name]["median_ms"]

        ratios[f"{arch}: ours pgnm / reference pgnm"] = ratio(
            ms("ours/pgnm"), ms("reference/pgnm"), "<= 0.8"
        )
        ratios[f"{arch}: ours pgnm_light / ours baseline"] = ratio(
            ms("ours/pgnm_light"), ms("ours/baseline"), "<= 1.10"
        )
        ratios[f"{arch}: reference pgnm / reference baseline"] = ratio(
            ms("reference/pgnm"), ms("reference/baseline"), None
        )
        ratios[f"{arch}: ours pgnm / ours baseline"] = ratio(
            ms("ours/pgnm"), ms("ours/baseline"), None
        )
        ratios[f"{arch}: ours baseline / reference baseline"] = ratio(
            ms("ours/baseline"), ms("reference/baseline"), None
        )
    p = result["pretrain"]
    for name in ("ours/pgnm", "ours/pgnm_light"):
        ratios[f"pretrain: {name} / reference img/s"] = ratio(
            (f"pretrain.{name}.img_s", p[name]["img_s"]),
            ("pretrain.reference/pgnm.img_s", p["reference/pgnm"]["img_s"]),
            ">= 1.5",
        )
    d = result["data"]
    ratios["data: dali / reference img/s"] = ratio(
        ("data.dali.img_s", d["dali"]["img_s"]),
        ("data.reference.img_s", d["reference"]["img_s"]),
        ">= 2.0",
    )
    m = result["mask"]
    ratios["mask: reference / full"] = ratio(
        ("mask.reference_ms", m["reference_ms"]), ("mask.full_ms", m["full_ms"]), ">= 8"
    )
    ratios["mask: fused / memcpy"] = ratio(
        ("mask.fused_ms", m["fused_ms"]), ("mask.memcpy_ms", m["memcpy_ms"]), "<= 2"
    )
    return ratios


def run(out: Path, quick: bool, threads: int, keep: bool = False) -> dict:
    sizes = QUICK if quick else FULL
    torch.set_num_threads(threads)
    cores = len(os.sched_getaffinity(0))
    start = time.perf_counter()
    result: dict = {"machine": machine(threads), "setup": {"quick": quick, **sizes}}
    result["setup"]["backbones"] = list(sizes["backbones"])
    work = Path(tempfile.mkdtemp(prefix="pgnm-run-all-"))
    try:
        print(f"generating {sizes['images']} images ...", flush=True)
        release = data.generate_release(
            work / "release", sizes["classes"], sizes["images"], sizes["gen_size"], cores
        )
        print("sharding and data loading ...", flush=True)
        shards = work / "shards"
        result["data"] = {"shard_img_s": data.shard(release, shards, cores)}
        result["data"].update(data.time_loaders(
            release, shards, work, sizes["loader_batch"], sizes["loader_epochs"], cores,
            sizes["crop"],
        ))  # fmt: skip
        result["memory"] = {
            name: memory_record(result["data"][name]["rss_mb_per_epoch"])
            for name in ("dali", "webdataset", "reference")
        }
        print("mask op ...", flush=True)
        result["mask"] = mask.run(
            sizes["mask_batch"], sizes["grid"], sizes["crop"], 3, 13, 6.0,
            sizes["mask_repeats"], sizes["mask_warmup"], 0,
        )  # fmt: skip
        result["steps"] = {}
        for arch in sizes["backbones"]:
            rounds = sizes["step_repeats"] + sizes["step_warmup"]
            with tqdm(total=rounds, desc=f"train step {arch}", unit="round") as bar:
                result["steps"][arch] = step.run_backbone(
                    arch, sizes["crop"], sizes["grid"], sizes["batch"], sizes["light_size"],
                    sizes["step_repeats"], sizes["step_warmup"], bar.update,
                )  # fmt: skip
        with tqdm(desc=f"pretraining {sizes['pretrain_arch']}", unit="step") as bar:
            result["pretrain"] = pretrain.run(
                work / "imagefolder", shards, sizes["pretrain_arch"], sizes["crop"],
                sizes["grid"], sizes["batch"], sizes["light_size"], sizes["pretrain_epochs"],
                sizes["pretrain_warmup"], cores, bar.update,
            )  # fmt: skip
    finally:
        if keep:
            print(f"kept the generated data in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["ratios"] = all_ratios(result)
    result["goals"] = {name: r["pass"] for name, r in result["ratios"].items() if r["goal"]}
    for name, record in result["memory"].items():
        if name != "reference":  # ours are held to it; the reference is shown for comparison
            result["goals"][f"memory: {name} RSS flat over epochs"] = record["flat"]
    result["machine"]["load_end"] = list(os.getloadavg())
    result["wall_s"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "results.md").write_text(report.markdown(result))
    result["plots"] = [path.name for path in report.plots(result, out)]
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run_all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the results")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for every part (default: cores)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args(argv)
    threads = len(os.sched_getaffinity(0)) if args.threads is None else args.threads
    if threads < 1:
        parser.error("--threads must be at least 1")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a directory")
    result = run(args.out, args.quick, threads, args.keep)
    print((args.out / "results.md").read_text())
    return result


if __name__ == "__main__":
    main()
