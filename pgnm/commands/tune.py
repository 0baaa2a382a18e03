"""Hyperparameter search: Ray Tune trials of stage 1 + a short stage 2, tracked in MLflow.

    pgnm tune --config tune/<name> [key=value ...]
    python launch/tune.py --config configs/tune/<name>.yaml [key=value ...]

The config is a pretrain config with a ``tune:`` section (search space, scheduler, metric;
see ``pgnm/tune``). Starts a local Ray (loopback only) under <run_dir>/<name>/ray unless
tune.address is set ("auto" joins a running cluster; tune.storage is then where every node
keeps checkpoints). Writes <run_dir>/<name>/: best.yaml (a config that ``pgnm pretrain``
takes unchanged), trials.csv, trials.md, search.png, search.json. Run again after a crash, the
same command continues the search (tune.resume=auto).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict:
    from pgnm.config import config_from_argv
    from pgnm.errors import reported_as_one_line

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # before Ray is imported: every trial's lines
    config = config_from_argv(argv, __doc__.splitlines()[0], prog)
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
