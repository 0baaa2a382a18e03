"""The whole protocol at small scale (`make paper`): synthetic data -> both objectives -> few-shot.

    python launch/paper.py [--config configs/fewshot/paper.yaml] [key=value ...]
    python launch/paper.py --rung small|medium [key=value ...]   # the scale ladder
    python launch/paper.py --ladder       # every finished rung side by side: runs/ladder/

1. writes a synthetic RadImageNet (12 classes, 1,200 images) and shards it, and three synthetic
   downstream sets: a MedMNIST-format OrganAMNIST-like ``.npz`` (11 CT organ classes), a
   BUSI-like folder-per-class set (3 breast-ultrasound classes) and a pediatric-pneumonia-like
   chest X-ray set (2 classes; X-ray is a modality the pretraining set lacks), all under
   ``runs/paper/``;
2. runs ``configs/fewshot/paper.yaml`` through ``pgnm.protocol.run_protocol``: stage 1 with
   the paper objective and with REINFORCE, stage 2 for both heated models, the baseline and
   its equal-budget and effective-LR controls, random init, then few-shot fine-tunes of every
   initialisation on every set (k = 8..256, 5 trials in this quick config);
3. prints the tables; ``runs/paper/fewshot-paper/`` holds fewshot.json/.md and the plots.

Every step is skipped when its output exists, so an interrupted run continues. ``--rung``
runs the same protocol at a larger scale (``RUNGS``: classes, images, crop, epochs, trials)
under ``runs/ladder/<rung>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

from pgnm.config import Config, load_config, parse_overrides, with_overrides  # noqa: E402
from pgnm.errors import reported_as_one_line  # noqa: E402

OUT = Path("runs/paper")  # the paths configs/fewshot/paper.yaml and configs/paper/ name
# Ultrasound like pretraining's US classes, and chest X-ray: a modality the pretraining set lacks
# (train, val, test) images per class; at least 256 training images for k = 256
FOLDER_SETS = {"busi": (120, 20, 60), "pneumonia_xr": (150, 20, 60)}


@dataclass(frozen=True)
class Rung:
    """One rung of the scale ladder: the same protocol on more data for longer."""

    classes: int
    images: int
    image_size: int  # training crop; evaluation resizes to 9/8 of it first
    pretrain_epochs: int  # stage 1, and the baseline recipe trained like it
    finetune_epochs: int  # stage 2
    trials: int


# toy: configs/fewshot/paper.yaml as written. The others write to runs/ladder/<rung>/. small is
# sized to finish in about two hours on 2 CPU cores (its stage-1 runs take about 6 min each).
RUNGS = {"toy": Rung(12, 1200, 48, 6, 2, 3), "small": Rung(30, 3000, 64, 10, 2, 5),
         "medium": Rung(165, 16500, 64, 10, 2, 5)}


def rung_config(config: Config, rung: Rung, out: Path) -> Config:
    """``config`` moved to ``out`` at the rung's scale: every stage of every initialisation
    trains on the rung's shards, crop and epochs."""
    size = {"data.image_size": rung.image_size, "data.eval_resize": rung.image_size * 9 // 8}
    inits = {}
    for name, spec in config.fewshot.inits.items():
        stages = []
        for stage in spec.train:
            stage_one = stage.stage == "pretrain" or "pretrain" in str(stage.config)
            epochs = rung.pretrain_epochs if stage_one else rung.finetune_epochs
            extra = {"data.root": str(out / "radimagenet-shards"), **size,
                     "schedule.epochs": epochs}
            if stage_one:  # the step schedule's two drops at 1/3 and 2/3, as in 90 epochs
                extra["schedule.step_size"] = max(1, epochs // 3)
            stages.append(stage.model_copy(update={"overrides": {**stage.overrides, **extra}}))
        inits[name] = spec.model_copy(update={"train": stages}).model_dump()
    downstream = out / "downstream"
    datasets = {"organamnist": str(downstream / "organamnist_64.npz"),
                **{name: str(downstream / name) for name in FOLDER_SETS}}
    return with_overrides(config, {"run_dir": str(out), "fewshot.inits": inits,
                                   "fewshot.datasets": datasets, "fewshot.trials": rung.trials,
                                   **size}, f"rung {out.name}")


def prepare_data(out: Path, classes: int, images: int) -> None:
    from data_tools.radimagenet_to_wds import main as shard
    from data_tools.synth.companions import write_folder_dataset, write_medmnist_npz
    from data_tools.synth.generate import generate_radimagenet

    shards = out / "radimagenet-shards"
    if not (shards / "dataset.json").is_file():
        generate_radimagenet(out / "raw", classes=classes, total=images, size=80, seed=0,
                             workers=os.cpu_count() or 1)
        shard(["--src", str(out / "raw"), "--out", str(shards), "--samples-per-shard", "200"])
    downstream = out / "downstream"
    # val splits of 10-20 images per class: each few-shot fine-tune stops on its val loss
    if not (downstream / "organamnist_64.npz").is_file():  # 40 / 10 / 30 images per class
        write_medmnist_npz(downstream, "organamnist", sizes=(64,), counts=(440, 110, 330), seed=1)
    for name, per_class in FOLDER_SETS.items():
        marker = downstream / name / ".complete"
        if not marker.is_file():
            write_folder_dataset(downstream, name, per_class=per_class, size=64, seed=1)
            marker.touch()


def compare_rungs(name: str) -> None:
    """The ladder's table and plots from every rung whose fewshot.json exists."""
    from pgnm.protocol import ladder

    paths = {rung: (OUT if rung == "toy" else Path("runs/ladder") / rung) / name / "fewshot.json"
             for rung in RUNGS}
    for rung in [r for r, p in paths.items() if not p.is_file()]:
        print(f"rung {rung}: no {paths.pop(rung)} yet, left out")
    if not paths:
        raise SystemExit("paper: no rung has finished; run launch/paper.py [--rung R] first")
    for path in ladder.write(ladder.load(paths), Path("runs/ladder")):
        print(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/fewshot/paper.yaml"))
    parser.add_argument("--rung", choices=sorted(RUNGS), default="toy",
                        help="scale ladder rung (toy: the config as written, into runs/paper)")
    parser.add_argument("--classes", type=int, help="synthetic RadImageNet classes (toy: 12)")
    parser.add_argument("--images", type=int, help="synthetic RadImageNet images (toy: 1200)")
    parser.add_argument("--ladder", action="store_true",
                        help="compare the rungs that have finished: runs/ladder/ladder.md, PNGs")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the configs name their paths relative to the checkout
    if args.ladder:
        return compare_rungs(load_config(args.config, args.overrides).name)
    start = time.perf_counter()
    from pgnm.protocol import run_protocol

    rung = RUNGS[args.rung]
    out = OUT if args.rung == "toy" else Path("runs/ladder") / args.rung
    with reported_as_one_line("paper"):  # the launchers' one error path
        config = load_config(args.config, args.overrides)
        if args.rung != "toy":  # key=value overrides still win over the rung's settings
            config = with_overrides(rung_config(config, rung, out),
                                    parse_overrides(args.overrides), "command-line overrides")
        prepare_data(out, args.classes or rung.classes, args.images or rung.images)
        result = run_protocol(config)
    seconds = time.perf_counter() - start
    root = Path(config.run_dir) / config.name
    (root / "paper-wall-time.json").write_text(json.dumps({"seconds": seconds}))
    report = result.report  # what fewshot.json holds
    print(result.markdown_file.read_text())
    for name, init in report["inits"].items():
        stages = [s["name"] for s in init["stages"]]
        print(f"{name}: {init['note']}" + (f" (trained: {', '.join(stages)})" if stages else ""))
    print("\n".join(["results:", *(f"  {f}" for f in result.files)]))
    print(f"MLflow: parent run {report['mlflow']['parent_run_id']} in "
          f"{report['mlflow']['tracking_uri']}")
    print(f"total wall time: {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
