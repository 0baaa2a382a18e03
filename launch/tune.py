"""Hyperparameter search: Ray Tune trials of stage 1 + a short stage 2, tracked in MLflow.

    python launch/tune.py --config configs/tune/<name>.yaml [key=value ...]

The config is a pretrain config with a ``tune:`` section (search space, scheduler, metric;
see ``pgnm/tune``). Starts a local Ray (loopback only) under <run_dir>/<name>/ray unless
tune.address is set ("auto" joins a running cluster; tune.storage is then where every node
keeps checkpoints). Writes <run_dir>/<name>/: best.yaml (a config that launch/pretrain.py
takes unchanged), trials.csv, trials.md, search.png, search.json. Run again after a crash, the
same command continues the search (tune.resume=auto).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pgnm.config import config_from_argv  # noqa: E402
from pgnm.errors import reported_as_one_line  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    config = config_from_argv(argv, __doc__.splitlines()[0])
    from pgnm.tune import check, run_search

    with reported_as_one_line("tune"):
        check(config)  # before Ray starts: a bad key should cost a second, not a cluster
        summary = run_search(config)  # and an unreachable tune.address, one line
    best = summary.get("best")
    if best is None:
        print("no trial produced a score; see trials.md", file=sys.stderr)
        raise SystemExit(1)
    print(f"best trial {best['trial']}: {summary['metric']} = {best[summary['metric']]}")
    print(f"best config: {best['config']}")
    if summary.get("registered"):
        print(f"registered: {summary['registered']['model_uri']}")
    return summary


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    main()
