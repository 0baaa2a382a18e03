"""The first thing to run on a GPU machine: does every GPU path of pgnm work, and how fast?

    make gpu-check        # = python -m benchmarks.gpu_check --json runs/gpu-check/gpu_check.json

About 5 minutes on one GPU (all of it is small). JSON, and a table on stdout:

1. **device**: name, memory, compute capability; torch, CUDA, DALI and Triton versions.
2. **decode**: DALI's ``mixed`` (GPU) image decoder against its CPU decoder on the same PNG and
   JPEG shards. PNG must be pixel-identical; JPEG within a mean |difference| of 1 grey level
   and a largest one of 16 (nvJPEG and libjpeg-turbo round the inverse DCT differently).
3. **mask**: the compiled Triton kernel against the reference chain in fp32 and bf16, and its
   bytes moved per second as a fraction of a device-to-device copy of the same batch (what
   the memory system really gives) and of the spec sheet's peak where the device is known.
4. **step**: one step of ``PGNMModel`` in a DeepSpeed engine on one GPU (NCCL, bf16 with ZeRO
   1 for fp32 master weights): resnet50 baseline, faithful PGNM and light PGNM, in img/s,
   beside the official recipe (fp32, as the official code trains: its AMP flag is dead code).
5. **loader**: the DALI loader's img/s, training augmentation with ``mixed`` decoding.
6. **resume**: a short run with the ``mixed`` pipeline stopped at a checkpoint and resumed
   against the same run straight through, in deterministic mode (``engine.deterministic``):
   the weights must be identical.

Without a GPU it stops at once with status 2 and says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pgnm  # noqa: F401  (before timm / torchvision)

ROOT = Path(__file__).resolve().parents[1]
PEAK_BYTES_PER_S = {"H200": 4.8e12, "H100 SXM": 3.35e12, "H100 PCIe": 2.0e12, "H100": 3.35e12,
                    "A100-SXM4-80GB": 2.04e12, "A100": 1.56e12, "L40S": 0.864e12, "A10": 0.6e12}
JPEG_MEAN_LIMIT, JPEG_MAX_LIMIT = 1.0, 16


class NoGPU(SystemExit):
    pass


def require_gpu() -> torch.device:
    if not torch.cuda.is_available():
        print("benchmarks.gpu_check needs a CUDA GPU, and torch sees none on this machine "
              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); nothing was "
              "run. Run it on a GPU node: make gpu-check", file=sys.stderr)
        raise NoGPU(2)
    return torch.device("cuda", torch.cuda.current_device())


def device_info(device: torch.device) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(device)
    versions = {"torch": torch.__version__, "cuda": torch.version.cuda}
    for name, module in (("dali", "nvidia.dali"), ("triton", "triton")):
        try:
            versions[name] = __import__(module, fromlist=["__version__"]).__version__
        except ImportError:
            versions[name] = None
    return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "count": torch.cuda.device_count(),
            **versions, "machine": platform.machine()}


def spec_peak(name: str) -> float | None:
    return next((peak for key, peak in PEAK_BYTES_PER_S.items() if key in name), None)


# ----------------------------------------------------------------------------- data


def prepare_shards(out: Path, images: int = 384, size: int = 256) -> dict[str, Path]:
    """A small synthetic release, sharded as PNG and as JPEG (both read by the checks)."""
    from data_tools.radimagenet_to_wds import main as shard
    from data_tools.synth.generate import generate_radimagenet

    release = out / "release"
    if not (release / "RadiologyAI_train.csv").is_file():
        generate_radimagenet(release, classes=12, total=images, size=size, seed=0,
                             balanced=True, progress=False)
    shards = {}
    for fmt in ("png", "jpeg"):
        shards[fmt] = out / f"shards-{fmt}"
        if not (shards[fmt] / "dataset.json").is_file():
            shard(["--src", str(release), "--out", str(shards[fmt]), "--format", fmt,
                   "--samples-per-shard", "64", "--workers", "2"])
    return shards


def decoded(shards: Path, split: str, device_id: int | None) -> list[np.ndarray]:
    """Every image of ``split`` decoded to grey by DALI, in stored order, no augmentation."""
    from nvidia.dali import fn, pipeline_def, types

    from pgnm.data.manifest import load_dataset_info, split_shards

    info = load_dataset_info(shards)
    _, tars, indexes = split_shards(shards, split)

    @pipeline_def(batch_size=16, num_threads=2, device_id=device_id)
    def pipeline():  # noqa: ANN202
        encoded = fn.readers.webdataset(paths=[str(p) for p in tars],
                                        index_paths=[str(p) for p in indexes],
                                        ext=[info.image_extension], pad_last_batch=True,
                                        name="Reader")
        return fn.decoders.image(encoded, device="mixed" if device_id is not None else "cpu",
                                 output_type=types.GRAY)

    pipe = pipeline()
    pipe.build()
    total = info.splits[split].samples
    out: list[np.ndarray] = []
    while len(out) < total:
        (batch,) = pipe.run()
        batch = batch.as_cpu() if device_id is not None else batch
        out.extend(np.array(batch[i]) for i in range(len(batch)))
    return out[:total]


def decode_agreement(gpu: list[np.ndarray], cpu: list[np.ndarray]) -> dict[str, Any]:
    """Mean and largest |difference| in grey levels over all pixels, and shape mismatches."""
    diffs, mismatched = [], 0
    for a, b in zip(gpu, cpu, strict=True):
        if a.shape != b.shape:
            mismatched += 1
            continue
        diffs.append(np.abs(a.astype(np.int16) - b.astype(np.int16)).ravel())
    every = np.concatenate(diffs) if diffs else np.zeros(1, np.int16)
    return {"images": len(cpu), "shape_mismatches": mismatched,
            "mean_abs_diff": float(every.mean()), "max_abs_diff": int(every.max())}


def check_decode(shards: dict[str, Path], device: torch.device) -> dict[str, Any]:
    result = {}
    for fmt, root in shards.items():
        agreement = decode_agreement(decoded(root, "train", device.index),
                                     decoded(root, "train", None))
        if fmt == "png":
            agreement["ok"] = agreement["shape_mismatches"] == 0 and agreement["max_abs_diff"] == 0
        else:
            agreement["ok"] = (agreement["shape_mismatches"] == 0
                               and agreement["mean_abs_diff"] <= JPEG_MEAN_LIMIT
                               and agreement["max_abs_diff"] <= JPEG_MAX_LIMIT)
        result[fmt] = agreement
    return result


# ----------------------------------------------------------------------------- kernels, steps


def check_mask(device: torch.device) -> dict[str, Any]:
    from benchmarks import mask

    result = mask.run(32, 64, 224, 3, 13, 6.0, repeats=20, warmup=5, seed=0, device=device)
    copy_rate, peak = result["copy_bytes_per_s"], spec_peak(torch.cuda.get_device_name(device))
    for stats in result["triton"].values():
        stats["of_copy_bandwidth"] = round(stats["bytes_per_s"] / copy_rate, 3)
        stats["of_spec_peak"] = round(stats["bytes_per_s"] / peak, 3) if peak else None
    result["triton_ok"] = (result["triton"]["fp32"]["max_abs_err_vs_reference"] <= 1e-5
                           and result["triton"]["bf16"]["max_abs_err_vs_reference"] <= 5e-2)
    return result


def check_steps(batch: int = 64) -> dict[str, Any]:
    from benchmarks.step import run_backbone

    timings = run_backbone("resnet50", 224, 64, batch, 64, repeats=10, warmup=3,
                           extra=("engine.precision=bf16", "engine.zero_stage=1"))
    return {name: {**t, "img_s": round(batch / (t["median_ms"] / 1e3), 1)}
            for name, t in timings.items()}


def check_loader(shards: Path, device: torch.device, batch: int = 64) -> dict[str, Any]:
    from pgnm.data import DaliLoader
    from pgnm.data.spec import AugmentSpec

    loader = DaliLoader(shards, "train", batch, True, AugmentSpec(), device_id=device.index,
                        num_threads=4)
    images, start = 0, None
    for epoch in range(3):  # the first is warm-up
        loader.set_epoch(epoch)
        if epoch == 1:
            torch.cuda.synchronize(device)
            start = time.perf_counter()
        for batch_images, _ in loader:
            images += batch_images.shape[0] if epoch else 0
    torch.cuda.synchronize(device)
    return {"img_s": round(images / (time.perf_counter() - start), 1), "batch": batch,
            "images_timed": images}


def check_resume(shards: Path, out: Path) -> dict[str, Any]:
    """Straight through vs stopped at a checkpoint and resumed, ``mixed`` DALI, on the GPU."""
    common = ["model.arch=resnet18", "policy.hidden_dim=64", "mask.grid=16",
              "mask.kernel_size=5", "mask.sigma=2.0", "data.image_size=64",
              "data.eval_resize=72", "data.batch_size=32", "data.loader=dali",
              f"data.root={shards}", "engine.device=cuda", "engine.deterministic=true",
              "engine.checkpoint_every=3", "tracking.enabled=false", "schedule.epochs=2",
              "optim.lr=0.02"]
    runs = {"straight": ["schedule.max_steps=9"], "stopped": ["schedule.max_steps=6"],
            "resumed": ["schedule.max_steps=9"]}
    for name, extra in runs.items():
        folder = "interrupted" if name != "straight" else "straight"
        cmd = [sys.executable, str(ROOT / "launch" / "pretrain.py"), *common, *extra,
               f"run_dir={out / folder}", "name=run"]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            return {"ok": False, "failed": name, "stderr": done.stderr[-3000:]}
    a = torch.load(out / "straight" / "run" / "model" / "model.pt", weights_only=True)
    b = torch.load(out / "interrupted" / "run" / "model" / "model.pt", weights_only=True)
    differing = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k],
                                                              b["state_dict"][k])]
    return {"ok": not differing, "tensors": len(a["state_dict"]), "differing": differing[:10]}


# ----------------------------------------------------------------------------- report


def table(result: dict[str, Any]) -> str:
    d, lines = result["device"], []
    lines.append(f"device   {d['name']} ({d['memory_gib']} GiB, sm {d['capability']}), torch "
                 f"{d['torch']}, CUDA {d['cuda']}, DALI {d['dali']}, Triton {d['triton']}")
    for fmt, a in result.get("decode", {}).items():
        lines.append(f"decode   {fmt:4s} mixed vs cpu: mean |diff| {a['mean_abs_diff']:.3f}, max "
                     f"{a['max_abs_diff']} over {a['images']} images  "
                     f"{'ok' if a['ok'] else 'FAILED'}")
    if "mask" in result:
        for name, t in result["mask"]["triton"].items():
            lines.append(f"mask     triton {name}: {t['ms']} ms, {t['bytes_per_s'] / 1e9:.0f} GB/s "
                         f"= {t['of_copy_bandwidth']} of a copy, {t['of_spec_peak']} of peak, "
                         f"max err {t['max_abs_err_vs_reference']:.1e}")
    for name, t in result.get("step", {}).items():
        lines.append(f"step     {name:22s} {t['median_ms']:8.1f} ms  {t['img_s']:8.1f} img/s")
    if "loader" in result:
        lines.append(f"loader   DALI mixed, training augmentation: "
                     f"{result['loader']['img_s']} img/s")
    if "resume" in result:
        lines.append(f"resume   mixed DALI, stopped and resumed vs straight: "
                     f"{'identical' if result['resume']['ok'] else 'DIFFERENT'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the generated data and runs (default: beside --json)")
    args = parser.parse_args(argv)
    device = require_gpu()
    work = args.work or args.json.parent / "work"
    start = time.perf_counter()
    result: dict[str, Any] = {"device": device_info(device)}
    shards = prepare_shards(work / "data")
    for name, check in (("decode", lambda: check_decode(shards, device)),
                        ("mask", lambda: check_mask(device)), ("step", check_steps),
                        ("loader", lambda: check_loader(shards["jpeg"], device)),
                        ("resume", lambda: check_resume(shards["jpeg"], work / "resume"))):
        began = time.perf_counter()
        try:
            result[name] = check()
        except Exception as err:  # one broken path must not hide the others' results
            result[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        result.setdefault("seconds", {})[name] = round(time.perf_counter() - began, 1)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    try:
        print(table(result))
    except KeyError:  # a check failed: its error is in the JSON
        print(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
