"""The whole protocol at small scale (`make paper`): synthetic data -> both objectives -> few-shot.

    python launch/paper.py [--config configs/fewshot/paper.yaml] [key=value ...]

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

Every step is skipped when its output exists, so an interrupted run continues.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

from pgnm.config import load_config  # noqa: E402
from pgnm.errors import reported_as_one_line  # noqa: E402

OUT = Path("runs/paper")  # the paths configs/fewshot/paper.yaml and configs/paper/ name
# Ultrasound like pretraining's US classes, and chest X-ray: a modality the pretraining set lacks
# (train, val, test) images per class; at least 256 training images for k = 256
FOLDER_SETS = {"busi": (120, 20, 60), "pneumonia_xr": (150, 20, 60)}


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/fewshot/paper.yaml"))
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the configs name their paths relative to the checkout
    start = time.perf_counter()
    from pgnm.protocol import run_protocol

    with reported_as_one_line("paper"):  # the launchers' one error path
        config = load_config(args.config, args.overrides)
        prepare_data(OUT, args.classes, args.images)
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
