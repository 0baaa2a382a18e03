"""The protocol's outputs: per-cell statistics, a Markdown table, one Fig.-5-style plot per set."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pgnm.atomic import atomic_path, atomic_write  # noqa: E402
from pgnm.protocol.stats import t_interval  # noqa: E402

METRICS = {"f1_macro": "macro-F1", "balanced_accuracy": "balanced accuracy",
           "auroc_macro_ovr": "macro one-vs-rest AUC"}


def write_json(path: Path, data: object) -> Path:
    return atomic_write(path, json.dumps(data, indent=1, allow_nan=True))


def summarise(trials: list[dict]) -> dict:
    """dataset -> init -> k -> metric -> t_interval(...) over that cell's trials."""
    cells: dict = defaultdict(list)
    for t in trials:
        cells[(t["dataset"], t["init"], t["k"])].append(t["metrics"])
    out: dict = {}
    for (dataset, init, k), rows in sorted(cells.items()):
        stats = {m: t_interval([r[m] for r in rows]) for m in METRICS}
        out.setdefault(dataset, {}).setdefault(init, {})[str(k)] = stats
    return out


def _cell(stat: dict) -> str:
    if math.isnan(stat["mean"]):
        return "n/a"
    if math.isnan(stat["half_width"]):
        return f"{stat['mean']:.3f}"
    return f"{stat['mean']:.3f} [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"


def markdown(summary: dict, sizes: list[int], trials: int, notes: dict[str, str]) -> str:
    """One table per dataset and metric: mean [95% t-interval] over the trials, per k."""
    lines = [f"Mean over {trials} trials per cell [95% t-interval], full test split.", ""]
    for dataset, by_init in summary.items():
        for metric, title in METRICS.items():
            lines += [f"### {dataset}: {title}", "",
                      "| init | " + " | ".join(f"k={k}" for k in sizes) + " |",
                      "|---|" + "---|" * len(sizes)]
            for init, by_k in by_init.items():
                cells = [_cell(by_k[str(k)][metric]) if str(k) in by_k else "" for k in sizes]
                lines.append(f"| {init} | " + " | ".join(cells) + " |")
            lines.append("")
    if notes:
        lines += ["Initialisations:", ""] + [f"- **{n}**: {text}" for n, text in notes.items()]
    return "\n".join(lines) + "\n"


def plot(summary: dict, dataset: str, path: Path, metric: str = "f1_macro") -> Path:
    """Mean metric vs k (log2 axis) with 95% CI bands, one line per initialisation."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for init, by_k in summary[dataset].items():
        ks = sorted(int(k) for k in by_k)
        stats = [by_k[str(k)][metric] for k in ks]
        mean = [s["mean"] for s in stats]
        line, = ax.plot(ks, mean, marker="o", label=init)
        low = [s["ci_low"] if not math.isnan(s["ci_low"]) else s["mean"] for s in stats]
        high = [s["ci_high"] if not math.isnan(s["ci_high"]) else s["mean"] for s in stats]
        ax.fill_between(ks, low, high, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training samples k (log2)")
    ax.set_ylabel(f"{METRICS[metric]} (test)")
    ax.set_title(f"{dataset}: few-shot fine-tuning, mean and 95% t-interval")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
