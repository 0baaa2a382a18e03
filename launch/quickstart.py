"""The main job on embedded defaults (`make run`): data -> heated model -> fine-tuned vs baseline.

    python launch/quickstart.py [--out runs/quickstart] [--ranks 2] [--images 1200] [--classes 12]

1. generates a small synthetic RadImageNet (raw release layout + split CSVs) and shards it;
2. pretrains the heated model (stage 1) with ``--ranks`` CPU ranks under the deepspeed launcher;
3. fine-tunes the heated model and, for comparison, the same backbone from scratch (stage 2);
4. prints a table of the validation metrics, the registry lineage of the fine-tuned model
   (MLflow, embedded sqlite store under ``<out>/runs/mlflow``), and where everything is.

Every step is skipped when its output already exists, so an interrupted quickstart continues.
The configs are ``configs/pretrain/smoke.yaml`` and ``configs/finetune/smoke.yaml``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

console = Console(width=None if sys.stdout.isatty() else 120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(script: str, ranks: int, config: str, *overrides: str) -> None:
    python = Path(sys.executable)
    # The quickstart is the CPU demo, also on a GPU machine: both device settings say so.
    args = [str(ROOT / "launch" / script), "--config", str(ROOT / config), "engine.device=cpu",
            *overrides]
    if ranks > 1:
        launcher = [
            str(python),
            str(python.with_name("deepspeed")),
            "--num_gpus",
            str(ranks),
            "--master_port",
            str(_free_port()),
        ]
    else:
        launcher = [str(python)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{python.parent}:{env.get('PATH', '')}"
    env["DS_ACCELERATOR"] = "cpu"
    shown = " ".join(Path(a).name for a in launcher[:2]) + f" ... {script} {' '.join(overrides)}"
    console.print(f"[bold]$ {shown}")
    subprocess.run(launcher + args, cwd=ROOT, env=env, check=True)


def prepare_data(out: Path, images: int, classes: int) -> Path:
    shards = out / "shards"
    if (shards / "dataset.json").is_file():
        console.print(f"data: reusing {shards}")
        return shards
    from data_tools.radimagenet_to_wds import main as shard
    from data_tools.synth.generate import generate_radimagenet

    console.rule("1/4 synthetic RadImageNet")
    generate_radimagenet(
        out / "raw", classes=classes, total=images, size=80, seed=0, workers=os.cpu_count() or 1
    )
    shard(["--src", str(out / "raw"), "--out", str(shards), "--samples-per-shard", "200"])
    return shards


def _summary(runs: Path, name: str) -> dict:
    return json.loads((runs / name / "summary.json").read_text())


def _heated_uri(runs: Path, model_file: Path) -> str:
    """The registered heated model (models:/name/version), or its file if MLflow was off."""
    registered = _summary(runs, "smoke-pretrain").get("registered")
    return registered["model_uri"] if registered else str(model_file)


def run(out: Path, ranks: int, images: int, classes: int) -> dict:
    start = time.perf_counter()
    shards = prepare_data(out, images, classes)
    runs = out / "runs"
    common = [f"data.root={shards}", f"run_dir={runs}"]
    heated_model = runs / "smoke-pretrain" / "model" / "model.pt"
    steps = [
        (
            "2/4 stage 1: heated model (PGNM)",
            "pretrain.py",
            "configs/pretrain/smoke.yaml",
            "smoke-pretrain",
            [],
        ),
        (
            "3/4 stage 2: fine-tune the heated model",
            "finetune.py",
            "configs/finetune/smoke.yaml",
            "finetune-heated",
            ["model.init={heated}"],  # filled in once stage 1 has registered its model
        ),
        (
            "4/4 stage 2: baseline from scratch",
            "finetune.py",
            "configs/finetune/smoke.yaml",
            "finetune-baseline",
            ["model.init=null"],
        ),
    ]
    for title, script, config, name, extra in steps:
        console.rule(title)
        if (runs / name / "summary.json").is_file():
            console.print(f"{name}: done already, skipping")
            continue
        extra = [e.format(heated=_heated_uri(runs, heated_model)) for e in extra]
        _launch(script, ranks, config, *common, f"name={name}", *extra)

    table = Table(title=f"pgnm quickstart ({ranks} CPU ranks, synthetic RadImageNet, val split)")
    for column in ("run", "eval"):
        table.add_column(column, no_wrap=True)
    for column in ("top-1", "top-5", "macro F1", "bal. acc.", "AUROC", "train img/s"):
        table.add_column(column, justify="right")
    results = {}
    for _, _, _, name, _ in steps:
        summary = _summary(runs, name)
        results[name] = summary
        variants = ["plain", "masked"] if name == "smoke-pretrain" else ["plain"]
        for variant in variants:
            m = summary["final"]
            table.add_row(
                name,
                variant,
                *(
                    f"{m[f'{variant}/{k}']:.3f}"
                    for k in ("top1", "top5", "f1_macro", "balanced_accuracy", "auroc_macro_ovr")
                ),
                f"{summary['train_img_s']:.1f}",
            )
    console.print(table)
    tuned = results["finetune-heated"].get("registered")
    if tuned:  # the registry's view: fine-tuned model -> heated model -> run -> data
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pgnm.tracking",
                "--run-dir",
                str(runs),
                "lineage",
                tuned["model_uri"],
            ],
            cwd=ROOT,
            check=False,
        )
        store = runs / "mlflow" / "mlflow.db"
        console.print(
            f"MLflow UI:     mlflow ui --backend-store-uri sqlite:///{store} --host 127.0.0.1"
        )
    console.print(f"heated model:  {heated_model}")
    console.print(f"mask gallery:  {runs / 'smoke-pretrain' / 'gallery'}")
    console.print(f"curves:        {runs}/*/curves.png;  metrics: {runs}/*/metrics.jsonl")
    console.print(f"total wall time: {time.perf_counter() - start:.0f} s")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quickstart")
    parser.add_argument("--ranks", type=int, default=2, help="CPU ranks for each training run")
    parser.add_argument("--images", type=int, default=1200, help="synthetic images to generate")
    parser.add_argument("--classes", type=int, default=12)
    args = parser.parse_args(argv)
    try:
        run(args.out, args.ranks, args.images, args.classes)
    except subprocess.CalledProcessError as err:
        console.print(f"[red]a training step failed (exit {err.returncode}); see its output above")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
