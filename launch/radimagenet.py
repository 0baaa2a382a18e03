"""The paper's protocol on real RadImageNet, one command: every training run, then few-shot.

    python launch/radimagenet.py --src /data/radimagenet --arch resnet50 --gpus 8 [--dry-run]

Runs, in order, each skipped when its ``runs/<name>/summary.json`` exists (an interrupted run
resumes from its checkpoints when started again):

1. ``data_tools.radimagenet_to_wds``: the raw tree and split CSVs into ``data/radimagenet-shards``;
2. stage 1 (``configs/pretrain/paper_<arch>.yaml``, DeepSpeed on ``--gpus`` GPUs) three times:
   the paper objective, REINFORCE, and the random-mask control (``policy.learn=false``);
3. the baseline (the same recipe, policy off) and the effective-LR control (lr x log G²);
4. stage 2 (``configs/finetune/paper_<arch>.yaml``) on each heated model and on the baseline
   (the equal-budget control);
5. ``launch/fewshot.py --config configs/fewshot/radimagenet.yaml`` on those eight models
   (random init included), with the downstream sets that config names.

The global batch stays the paper's at any GPU count: 256 in stage 1 (32 x 8 GPUs) and in stage
2 (64 x 4 GPUs), so ``data.batch_size`` is 256 / ``--gpus`` per GPU. The downstream sets are
checked before anything starts. ``--dry-run`` prints the commands. What it costs, estimated:
``python -m benchmarks.gpu_hours`` (README, "Real data").
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

from pgnm.config import ConfigError, load_config  # noqa: E402
from pgnm.errors import reported_as_one_line  # noqa: E402

ARCHS = ("resnet10t", "resnet18", "resnet50")
FEWSHOT = ROOT / "configs" / "fewshot" / "radimagenet.yaml"
GLOBAL_BATCH = 256  # stage 1: 32 per GPU x 8 GPUs; stage 2: 64 per GPU x 4 GPUs


def plan(src: Path, arch: str, gpus: int, shards: Path) -> list[tuple[str | None, list[str]]]:
    """(run name or None, command) in order; a named run is skipped once it has finished."""
    if GLOBAL_BATCH % gpus:
        raise ConfigError(f"--gpus {gpus}: the global batch {GLOBAL_BATCH} must divide evenly")
    pretrain = f"configs/pretrain/paper_{arch}.yaml"
    finetune = f"configs/finetune/paper_{arch}.yaml"
    stage1 = load_config(ROOT / pretrain)
    effective_lr = stage1.optim.lr * math.log(stage1.mask.grid ** 2)  # the paper objective's S
    common = [f"data.root={shards}", f"data.batch_size={GLOBAL_BATCH // gpus}"]
    ds = ["deepspeed", "--num_gpus", str(gpus)]
    runs: list[tuple[str | None, list[str]]] = [
        (None, [sys.executable, "-m", "data_tools.radimagenet_to_wds", "--src", str(src),
                "--out", str(shards)])]
    heated = {"paper": ["objective.name=paper"], "reinforce": ["objective.name=reinforce"],
              "random-mask": ["objective.name=paper", "policy.learn=false"]}
    for tag, extra in heated.items():
        runs.append((f"pgnm-{arch}-{tag}", [*ds, "launch/pretrain.py", "--config", pretrain,
                                            f"name=pgnm-{arch}-{tag}", *common, *extra]))
    plain = [*ds, "launch/finetune.py", "--config", pretrain, "model.init=null",
             "policy.enabled=false", *common]
    runs.append((f"baseline-{arch}", [*plain, f"name=baseline-{arch}"]))
    runs.append((f"baseline-{arch}-effective-lr", [*plain, f"name=baseline-{arch}-effective-lr",
                                                   f"optim.lr={effective_lr:.6g}"]))
    for tag in ("paper", "reinforce", "random-mask", "baseline"):
        source = f"baseline-{arch}" if tag == "baseline" else f"pgnm-{arch}-{tag}"
        runs.append((f"finetune-{arch}-{tag}", [
            *ds, "launch/finetune.py", "--config", finetune, f"name=finetune-{arch}-{tag}",
            f"model.init=runs/{source}/model/model.pt", *common]))
    models = {"heated-paper": f"finetune-{arch}-paper",
              "heated-reinforce": f"finetune-{arch}-reinforce",
              "random-mask": f"finetune-{arch}-random-mask",
              "baseline": f"baseline-{arch}",
              "baseline-equal-budget": f"finetune-{arch}-baseline",
              "baseline-effective-lr": f"baseline-{arch}-effective-lr"}
    # one fine-tune per GPU at a time (pgnm.protocol.workers): 2,100 of them, one by one, would
    # leave all GPUs but one idle
    overrides = [f"model.arch={arch}", f"name=fewshot-radimagenet-{arch}",
                 f"fewshot.workers={gpus}",
                 *(f"fewshot.inits.{init}.model=runs/{run}/model/model.pt"
                   for init, run in models.items())]
    load_config(FEWSHOT, overrides)  # a typo here should fail now, not after the training
    runs.append((None, [sys.executable, "launch/fewshot.py", "--config",
                        str(FEWSHOT.relative_to(ROOT)), *overrides]))
    return runs


def check_downstream() -> None:
    """Every downstream set the few-shot config names exists, in a layout the protocol reads."""
    for name, source in load_config(FEWSHOT).fewshot.datasets.items():
        path = ROOT / source
        if path.suffix == ".npz":
            if not path.is_file():
                raise ConfigError(f"fewshot.datasets.{name}: {source} does not exist (a "
                                  f"MedMNIST+ .npz, e.g. from zenodo.org/records/10519652)")
        elif not (path / "train").is_dir() or not (path / "test").is_dir():
            raise ConfigError(f"fewshot.datasets.{name}: {source} needs train/<class>/ and "
                              f"test/<class>/ folders of images (val/ is optional: carved "
                              f"from train when absent)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True,
                        help="the RadImageNet release: radiology_ai/ and its three split CSVs")
    parser.add_argument("--arch", choices=ARCHS, default="resnet50")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per DeepSpeed run")
    parser.add_argument("--shards", type=Path, help="default: data/radimagenet-shards in the "
                        "checkout, where the paper configs look")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    with reported_as_one_line("radimagenet"):
        # every command runs in the checkout: paths given relative to the caller are resolved
        shards = args.shards.resolve() if args.shards else Path("data/radimagenet-shards")
        runs = plan(args.src.resolve(), args.arch, args.gpus, shards)
        if not args.dry_run:
            if not (args.src / "radiology_ai").is_dir():
                raise ConfigError(f"--src {args.src}: no radiology_ai/ folder (the RadImageNet "
                                  f"release: radiology_ai/ and RadiologyAI_{{train,val,test}}.csv)")
            check_downstream()
        for name, command in runs:
            done = name is not None and (ROOT / "runs" / name / "summary.json").is_file()
            print(("# done: " if done else "") + shlex.join(command), flush=True)
            if done or args.dry_run:
                continue
            if subprocess.run(command, cwd=ROOT).returncode != 0:
                raise SystemExit(f"radimagenet: {name or command[2]} failed; fix it and run "
                                 f"this command again to continue from there")


if __name__ == "__main__":
    main()
