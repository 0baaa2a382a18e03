"""An estimate, not a measurement: the GPU-hours of the paper's protocol on real RadImageNet.

    python -m benchmarks.gpu_hours --json OUT.json [--shards data/radimagenet-shards]
        [--results benchmarks/results/run_all_cpu2/results.json] [--measure resnet10t]

No GPU run of pgnm exists, so the estimate combines three things, each named in the output:

1. **What pgnm measured**, on CPU: the cost of one PGNM stage-1 step relative to a plain
   classifier step of the same backbone, batch and crop (``benchmarks.step``'s ``ours/pgnm``
   over ``ours/baseline``). It is read from a ``run_all`` results file, or measured here for the
   backbones named in ``--measure``. We assume the ratio carries over to a GPU; it is the
   policy network's forward and backward plus the mask, so on a GPU it is likely smaller.
2. **Published GPU throughput** of a plain classifier step: NVIDIA DeepLearningExamples'
   ResNet-50 v1.5 for PyTorch (``PyTorch/Classification/ConvNets/resnet50v1.5/README.md``,
   "Training performance: NVIDIA DGX A100 (8x A100 80GB)", container 21.03), and timm's
   RTX 3090 training benchmark (``results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv``),
   used only for how much faster resnet18 and resnet10t train than resnet50.
3. **The paper's recipe** as pgnm's configs state it (``configs/pretrain/paper_<arch>.yaml``,
   ``configs/finetune/paper_<arch>.yaml``): stage-1 and stage-2 epochs, and the set of
   initialisations the protocol trains.

The training-split size is read from a shard manifest when ``--shards`` is given; otherwise the
range that the split CSVs' sizes imply is used (no source states the exact count).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pgnm.atomic import atomic_write
from pgnm.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RESULTS = Path(__file__).resolve().parent / "results" / "run_all_cpu2" / "results.json"
ARCHS = ("resnet10t", "resnet18", "resnet50")

# NVIDIA DeepLearningExamples, ResNet-50 v1.5 for PyTorch, DGX A100 (8x A100 80GB), img/s.
# TF32 is what an fp32 run gets on an A100 (cuDNN convolutions use TF32 by default); mixed
# precision is the nearest published figure for engine.precision=bf16.
DLE_RN50_A100 = {"tf32": {"1": 938.0, "8": 7248.0}, "amp": {"1": 2470.0, "8": 16621.0}}
DLE_SOURCE = ("NVIDIA/DeepLearningExamples PyTorch/Classification/ConvNets/resnet50v1.5/"
              "README.md, Training performance: NVIDIA DGX A100 (8x A100 80GB)")
# timm results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv, train_samples_per_sec at
# batch 512: (img/s, image size). Only the ratio to resnet50 is used, scaled to 224 px by pixels.
TIMM_RTX3090 = {"resnet10t": (4669.46, 176), "resnet18": (2764.22, 224),
                "resnet50": (826.06, 224)}
TIMM_SOURCE = ("huggingface/pytorch-image-models "
               "results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv")
# RadImageNet's training split: the split CSVs' sizes imply 1.07-1.34 M rows (no exact count
# is published); the data set has 1.35 M images in all.
TRAIN_IMAGES_RANGE = (1_070_000, 1_340_000)
# The protocol's runs on RadImageNet (README, "Reproducing the paper"): stage 1 with the policy
# (heated-paper, heated-reinforce, random-mask), stage 1 without it (baseline, effective-LR),
# and stage 2 on each of the three heated models and on the baseline (the equal-budget control).
POLICY_STAGE1_RUNS, PLAIN_STAGE1_RUNS, STAGE2_RUNS = 3, 2, 4


def speed_vs_resnet50(arch: str) -> float:
    """How many times faster than resnet50 ``arch`` trains at 224 px (timm's RTX 3090 table)."""
    rate, size = TIMM_RTX3090[arch]
    return rate * (size / 224) ** 2 / TIMM_RTX3090["resnet50"][0]


def measured_ratios(results: Path | None, measure: list[str]) -> dict[str, dict[str, Any]]:
    """PGNM step / plain step per backbone: from a run_all results file, or timed here."""
    ratios: dict[str, dict[str, Any]] = {}
    if results is not None and results.is_file():
        steps = json.loads(results.read_text())["steps"]
        for arch, variants in steps.items():
            ratios[arch] = {"ratio": variants["ours/pgnm"]["median_ms"]
                            / variants["ours/baseline"]["median_ms"],
                            "source": str(results.name if results == RESULTS else results)}
    for arch in measure:
        import torch

        from benchmarks.step import ours_overrides, ours_step, time_steps

        torch.manual_seed(0)
        batch, size = 16, 224
        steps = {v: ours_step(ours_overrides(arch, v, size, 64, 64), batch)
                 for v in ("baseline", "pgnm")}
        images = torch.randn(batch, 1, size, size).expand(-1, 3, -1, -1)
        timed = time_steps(steps, images, torch.randint(0, 165, (batch,)), repeats=5, warmup=2)
        ratios[arch] = {"ratio": timed["pgnm"]["median_ms"] / timed["baseline"]["median_ms"],
                        "source": f"measured here: batch {batch}, {size} px, G 64, CPU",
                        "steps": timed}
    return ratios


def estimate(arch: str, ratio: float, train_images: int, gpus: int) -> dict[str, Any]:
    """GPU-hours and wall hours of one backbone's stage 1 and stage 2 runs, per precision."""
    stage1 = load_config(CONFIGS / "pretrain" / f"paper_{arch}.yaml").schedule.epochs
    stage2 = load_config(CONFIGS / "finetune" / f"paper_{arch}.yaml").schedule.epochs
    plain_images = (PLAIN_STAGE1_RUNS * stage1 + STAGE2_RUNS * stage2) * train_images
    policy_images = POLICY_STAGE1_RUNS * stage1 * train_images
    out: dict[str, Any] = {"stage1_epochs": stage1, "stage2_epochs": stage2}
    for precision, table in DLE_RN50_A100.items():
        per_gpu = table["8"] / 8 * speed_vs_resnet50(arch)  # at 8-GPU scaling efficiency
        seconds = (plain_images + ratio * policy_images) / per_gpu
        out[precision] = {"plain_img_s_per_gpu": round(per_gpu),
                          "gpu_hours": round(seconds / 3600, 1),
                          "wall_hours_on_gpus": round(seconds / 3600 / gpus, 1)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--shards", type=Path, help="a RadImageNet shard directory: its count")
    parser.add_argument("--results", type=Path, default=RESULTS, help="a run_all results.json")
    parser.add_argument("--measure", nargs="*", default=[], choices=ARCHS,
                        help="backbones whose step ratio to time here (CPU, a few minutes)")
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args(argv)
    if args.shards is not None:
        from pgnm.data.manifest import load_dataset_info

        counts = {"train_images": load_dataset_info(args.shards).splits["train"].samples}
        counts["source"] = str(args.shards)
    else:
        counts = {"low": TRAIN_IMAGES_RANGE[0], "high": TRAIN_IMAGES_RANGE[1],
                  "source": "the split CSVs' sizes (an estimate)"}
    ratios = measured_ratios(args.results, args.measure)
    fallback = max(ratios, key=lambda a: ratios[a]["ratio"]) if ratios else None
    archs: dict[str, Any] = {}
    for arch in ARCHS:
        known = ratios.get(arch)
        if known is None and fallback is None:
            raise SystemExit("gpu_hours: no measured step ratio; pass --results or --measure")
        ratio = known["ratio"] if known else ratios[fallback]["ratio"]
        entry: dict[str, Any] = {
            "pgnm_step_over_plain": round(ratio, 3),
            "ratio_source": known["source"] if known else
            f"not measured for {arch}: the largest measured ({fallback}) stands in"}
        for bound in ("train_images", "low", "high"):
            if bound in counts:
                entry[bound] = estimate(arch, ratio, counts[bound], args.gpus)
        archs[arch] = entry
    result = {
        "what": "an estimate of the GPU-hours of the paper's RadImageNet runs, not a measurement",
        "train_images": counts, "gpus": args.gpus,
        "runs": {"policy_stage1": POLICY_STAGE1_RUNS, "plain_stage1": PLAIN_STAGE1_RUNS,
                 "stage2": STAGE2_RUNS},
        "throughput_sources": {"resnet50_a100": DLE_SOURCE, "backbone_ratios": TIMM_SOURCE,
                               "resnet50_a100_img_s": DLE_RN50_A100},
        "assumptions": [
            "the CPU-measured PGNM/plain step ratio carries over to a GPU",
            "8-GPU scaling efficiency as published for resnet50 holds for every backbone",
            "resnet18 and resnet10t train faster than resnet50 by timm's RTX 3090 ratios",
            "data loading keeps up (DALI GPU decode) and evaluation passes are not counted",
            "the few-shot fine-tunes (about 1,000 short runs on one GPU) are not counted",
        ],
        "archs": archs,
    }
    atomic_write(args.json, json.dumps(result, indent=2) + "\n")
    for arch, entry in archs.items():
        for bound in ("train_images", "low", "high"):
            if bound in entry:
                e = entry[bound]
                print(f"{arch} ({bound}): {e['tf32']['gpu_hours']} GPU-h fp32/TF32, "
                      f"{e['amp']['gpu_hours']} GPU-h bf16 (ratio {entry['pgnm_step_over_plain']})")
    return result


if __name__ == "__main__":
    main()
