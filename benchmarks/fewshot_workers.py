"""How much faster do few-shot fine-tunes run in worker processes (``fewshot.workers``)?

    python -m benchmarks.fewshot_workers --protocol runs/ladder/medium/fewshot-paper \
        --inits baseline --sizes 8 64 --trials 3 --workers 1 2 --rounds 2 --json OUT

Re-runs a finished protocol's own fine-tunes (its subsets, seeds and recipe, read from its
``fewshot.json``) through the same ``run_jobs`` the protocol uses, once per worker count and
round. The worker counts alternate within each round, so a slow spell on a shared machine hits
every count alike; each round's speed-up is the quotient of two times measured in that round.
With one worker the fine-tunes run in this process with all its threads; with N, each worker
has ``cpu_count // N`` threads (or ``OMP_NUM_THREADS``), as in the protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.fewshot_lr import recipe
from pgnm.atomic import atomic_write
from pgnm.protocol.fewshot import finetune_config, finetune_row, subset_dir
from pgnm.protocol.inits import Resolved
from pgnm.protocol.workers import Job, run_jobs, worker_threads


def jobs(protocol: Path, report: dict, inits: list[str], sizes: list[int], trials: int,
         run_dir: Path) -> list[Job]:
    """The protocol's fine-tunes of ``inits`` at ``sizes``, first ``trials`` draws."""
    base = recipe(report)
    out = []
    for name in inits:
        if name not in report["inits"]:
            raise SystemExit(f"fewshot_workers: {protocol}/fewshot.json has no init {name!r} "
                             f"(it has {sorted(report['inits'])})")
        init = replace(Resolved(name, model=report["inits"][name]["model"]), stages=[])
        for dataset, by_k in report["draws"].items():
            for k in sizes:
                if str(k) not in by_k:
                    raise SystemExit(f"fewshot_workers: {protocol}/fewshot.json has no k={k} "
                                     f"for {dataset} (it has {sorted(by_k, key=int)})")
                for draw in by_k[str(k)][:trials]:
                    subset = subset_dir(protocol, dataset, k, draw["trial"])
                    ft = finetune_config(base, init, subset, k, draw["seed"], run_dir, None,
                                         report["mlflow"]["tracking_uri"])
                    row = {"init": name, "dataset": dataset, "k": k, "trial": draw["trial"],
                           "seed": draw["seed"]}
                    out.append(Job((name, dataset), row, (ft, init, row)))
    return out


def timed(protocol: Path, report: dict, args: argparse.Namespace, workers: int,
          tag: str) -> tuple[float, int]:
    """Seconds to run every job with ``workers`` workers, and how many jobs; their outputs
    are thrown away."""
    scratch = protocol / "workers-bench" / tag
    todo = jobs(protocol, report, args.inits, args.sizes, args.trials, scratch / "finetunes")
    start = time.perf_counter()
    for _ in run_jobs(todo, workers, finetune_row, scratch / "logs"):
        pass
    seconds = time.perf_counter() - start
    shutil.rmtree(scratch, ignore_errors=True)
    return seconds, len(todo)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", type=Path, required=True,
                        help="a finished protocol's directory (its fewshot.json and subsets)")
    parser.add_argument("--inits", nargs="+", required=True)
    parser.add_argument("--sizes", nargs="+", type=int, required=True)
    parser.add_argument("--trials", type=int, default=2, help="the first N draws per k")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    report = json.loads((args.protocol / "fewshot.json").read_text())
    seconds: dict[int, list[float]] = {n: [] for n in args.workers}
    for round_ in range(args.rounds):
        order = args.workers if round_ % 2 == 0 else list(reversed(args.workers))
        for workers in order:
            took, count = timed(args.protocol, report, args, workers, f"r{round_}-w{workers}")
            seconds[workers].append(took)
            print(f"round {round_}: {workers} worker(s): {seconds[workers][-1]:.1f} s for "
                  f"{count} fine-tunes", flush=True)
    shutil.rmtree(args.protocol / "workers-bench", ignore_errors=True)
    first = args.workers[0]
    result = {
        "protocol": str(args.protocol), "inits": args.inits, "sizes": args.sizes,
        "fine_tunes_per_run": count, "cpu_count": os.cpu_count(),
        "threads_in_process": torch.get_num_threads(),
        "threads_per_worker": {str(n): worker_threads(n) for n in args.workers if n > 1},
        "seconds": {str(n): {"min": min(s), "median": statistics.median(s), "max": max(s),
                             "all": s} for n, s in seconds.items()},
        "fine_tunes_per_minute": {str(n): 60 * count / statistics.median(s)
                                  for n, s in seconds.items()},
        "speedup_over_first": {str(n): statistics.median(
            [a / b for a, b in zip(seconds[first], s, strict=True)]) for n, s in seconds.items()},
    }
    atomic_write(args.json, json.dumps(result, indent=1))
    print(json.dumps({key: result[key] for key in ("fine_tunes_per_minute",
                                                   "speedup_over_first")}))
    return result


if __name__ == "__main__":
    main()
