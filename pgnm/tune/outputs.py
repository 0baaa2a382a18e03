"""What a finished search leaves behind, in ``<run_dir>/<name>/``:

* ``best.yaml``: the best trial's config, which ``launch/pretrain.py --config`` takes as is;
* ``trials.csv`` / ``trials.md``: one row per trial (state, iterations, score, sampled values),
  also printed as a table;
* ``search.png``: the score against each searched key;
* ``search.json``: all of the above plus the registered model.

The best trial is the best *complete* one (both stages run) by ``tune.metric``; trials ASHA
stopped early only compete when none completed.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from pgnm.atomic import atomic_path, atomic_write
from pgnm.config import Config, dump_config, with_overrides
from pgnm.names import Tag
from pgnm.tracking.store import mlflow_client
from pgnm.train.outputs import write_json
from pgnm.tune import runs
from pgnm.tune.trial import SCORE


def _rows(config: Config, grid, keys: list[str]) -> list[dict[str, Any]]:  # noqa: ANN001
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        complete = bool(metrics.get("done_stages"))
        state = "error" if result.error else ("complete" if complete else "stopped early")
        rows.append({
            "trial": metrics.get("trial_id", Path(result.path).name),
            "state": state,
            "iterations": metrics.get("training_iteration", 0),
            "retried": bool(metrics.get("retried")),
            "node": metrics.get("node_id"),  # in search.json only: which machine ran it
            "score": metrics.get(SCORE),
            config.tune.metric: metrics.get(config.tune.metric),
            **{k: result.config.get(k) for k in keys},
            "_params": dict(result.config),
            "_metrics": metrics,
        })
    return rows


def _best(config: Config, rows: list[dict]) -> dict | None:
    metric, sign = config.tune.metric, 1 if config.tune.mode == "max" else -1

    def valid(value: Any) -> bool:
        return isinstance(value, int | float) and math.isfinite(value)

    complete = [r for r in rows if r["state"] == "complete" and valid(r[metric])]
    if complete:
        return max(complete, key=lambda r: sign * r[metric])
    scored = [r for r in rows if valid(r["score"])]
    return max(scored, key=lambda r: sign * r["score"]) if scored else None


def _table(config: Config, rows: list[dict], keys: list[str]) -> tuple[str, str]:
    """CSV and markdown text, and the same table printed with rich."""
    from rich.console import Console
    from rich.table import Table

    columns = ["trial", "state", "iterations", "retried", "score", config.tune.metric, *keys]

    def shown(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    table = Table(title=f"search {config.name}: {config.tune.metric} ({config.tune.mode})")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(shown(row[c]) for c in columns))
    Console(width=160).print(table)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows([[row[c] for c in columns] for row in rows])
    markdown = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    markdown += ["| " + " | ".join(shown(row[c]) for c in columns) + " |" for row in rows]
    return buffer.getvalue(), "\n".join(markdown) + "\n"


def _plot(config: Config, rows: list[dict], keys: list[str], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        values = [r[key] for r in rows]
        categorical = not all(isinstance(v, int | float) for v in values)
        labels = sorted({str(v) for v in values})
        for row in rows:
            x = labels.index(str(row[key])) if categorical else row[key]
            done = row["state"] == "complete"
            ax.scatter([x], [row["score"] if row["score"] is not None else math.nan],
                       c="C0" if done else "none", edgecolors="C0" if done else "C3", s=40)
        if categorical:
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(key)
        ax.set_ylabel("score" if ax is axes[0][0] else "")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{config.name}: score vs. searched keys (hollow red: stopped early)",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path


def best_config(config: Config, best: dict) -> Config:
    """The base config with the best trial's values: what pretrain.py should train."""
    return with_overrides(config, {**best["_params"], "name": f"{config.name}-best"},
                          f"best trial {best['trial']}")


def write_outputs(config: Config, grid, out_dir: Path, keys: list[str]) -> dict:  # noqa: ANN001
    rows = _rows(config, grid, keys)
    best = _best(config, rows)
    csv_text, markdown = _table(config, rows, keys)
    atomic_write(out_dir / "trials.csv", csv_text)
    atomic_write(out_dir / "trials.md", markdown)
    plot = _plot(config, rows, keys, out_dir / "search.png")
    summary: dict[str, Any] = {
        "name": config.name, "metric": config.tune.metric, "mode": config.tune.mode,
        "trials": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        "plot": str(plot) if plot else None, "best": None,
    }
    if best is not None:
        header = (f"# Best trial {best['trial']} of search '{config.name}': "
                  f"{config.tune.metric} = {best[config.tune.metric]}\n"
                  f"# Train it with: python launch/pretrain.py --config <this file>\n")
        path = atomic_write(out_dir / "best.yaml", header + dump_config(best_config(config, best)))
        metrics = best["_metrics"]
        summary["best"] = {"trial": best["trial"], "config": str(path), "score": best["score"],
                           config.tune.metric: best[config.tune.metric],
                           "params": {k: best["_params"].get(k) for k in keys},
                           "heated_model_id": metrics.get("heated_model_id") or None,
                           "heated_run_id": metrics.get("heated_run_id") or None}
    write_summary(out_dir, summary)
    return summary


def write_summary(out_dir: Path, summary: dict) -> Path:
    return write_json(out_dir / "search.json", summary)


def register_best(config: Config, summary: dict, uri: str, search_run_id: str) -> dict | None:
    """The best trial's heated model joins ``pgnm-heated-<arch>`` (or tracking.registered_model)."""
    best = summary["best"]
    if not best.get("heated_model_id"):
        return None
    arch = best["params"].get("model.arch") or config.model.arch
    name = config.tracking.registered_model or f"pgnm-heated-{arch}"
    tags = {Tag.TUNE_SEARCH_RUN_ID: search_run_id, Tag.TUNE_TRIAL_ID: best["trial"],
            Tag.TUNE_METRIC: config.tune.metric, Tag.TUNE_SCORE: str(best["score"])}
    return runs.register_best(uri, name, config.tracking.alias, best["heated_model_id"],
                              best["heated_run_id"], tags)


def log_to_search_run(uri: str, run_id: str, out_dir: Path, summary: dict) -> None:
    client = mlflow_client(uri)
    for name in ("search.json", "trials.csv", "trials.md", "search.png", "best.yaml",
                 "search_config.yaml"):
        if (out_dir / name).exists():
            client.log_artifact(run_id, str(out_dir / name))
    if summary.get("best"):
        client.set_tag(run_id, Tag.TUNE_BEST_TRIAL, summary["best"]["trial"])
        if summary.get("registered"):
            client.set_tag(run_id, Tag.TUNE_BEST_MODEL_URI, summary["registered"]["model_uri"])
        value = summary["best"].get(summary["metric"])
        if isinstance(value, int | float):
            client.log_metric(run_id, f"best/{summary['metric']}", float(value))
