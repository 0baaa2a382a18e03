"""Across the scale ladder: every rung's paired differences from the baseline, side by side.

Each rung of ``launch/paper.py --rung`` writes its own ``fewshot.json``; this reads them and
answers the ladder's question in one table and one figure: does heated − baseline move with
scale, and does it survive the controls (random-mask − baseline beside it)?
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from pgnm.atomic import atomic_path, atomic_write  # noqa: E402
from pgnm.protocol.report import METRICS, interval_cell  # noqa: E402

# the two heated models, the control that isolates the policy, and the two that isolate the
# budget and the paper objective's learning-rate factor
COMPARED = ("heated-paper", "heated-reinforce", "random-mask", "baseline-equal-budget",
            "baseline-effective-lr")
EVALUATIONS = {"fine-tune": ("paired", "differences"), "linear probe": ("probe", "paired")}


def load(paths: dict[str, Path]) -> dict[str, dict]:
    """rung -> its fewshot.json, in the order given (smallest rung first)."""
    reports = {}
    for rung, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"ladder: rung {rung}: {path} does not exist (run "
                                    f"launch/paper.py --rung {rung} first)")
        reports[rung] = json.loads(path.read_text())
    return reports


def differences(report: dict, evaluation: str) -> dict:
    """dataset -> init -> k -> metric -> paired difference, for one evaluation of one rung."""
    outer, inner = EVALUATIONS[evaluation]
    section = report.get(outer) or {}
    return section.get(inner) or {}


def _lr_rule(report: dict) -> str:
    """How the rung's fine-tunes got their learning rate: rungs compare fairly only when it is
    the same rule."""
    search = report.get("lr_search")
    if search:
        return f"lr chosen per draw from {search['lrs']} on val {search['select_on']}"
    lr = (report.get("recipe") or {}).get("optim.lr")
    return f"one lr ({lr})" if lr is not None else "one lr"


def markdown(reports: dict[str, dict], metric: str = "f1_macro") -> str:
    """One table per evaluation: rows (set, init, rung), columns k, cells mean [95% CI]."""
    lines = ["# The scale ladder: paired differences from the baseline", ""]
    for rung, report in reports.items():
        lines.append(f"- **{rung}**: {report['trials_per_size']} trials per k, "
                     f"baseline `{report['paired']['baseline']}`, {_lr_rule(report)}")
    for evaluation in EVALUATIONS:
        per_rung = {r: differences(rep, evaluation) for r, rep in reports.items()}
        sizes = sorted({int(k) for d in per_rung.values() for by_init in d.values()
                        for by_k in by_init.values() for k in by_k})
        if not sizes:
            continue
        lines += ["", f"## {evaluation}: {METRICS[metric]}, init − baseline, mean [95% "
                      f"t-interval] over the shared draws", "",
                  "| set | init | rung | " + " | ".join(f"k={k}" for k in sizes) + " |",
                  "|---|---|---|" + "---|" * len(sizes)]
        datasets = sorted({d for diffs in per_rung.values() for d in diffs})
        for dataset in datasets:
            for init in COMPARED:
                for rung, diffs in per_rung.items():
                    by_k = diffs.get(dataset, {}).get(init)
                    if not by_k:
                        continue
                    cells = [interval_cell(by_k[str(k)][metric], signed=True)
                             if str(k) in by_k else "" for k in sizes]
                    lines.append(f"| {dataset} | {init} | {rung} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(reports: dict[str, dict], path: Path, metric: str = "f1_macro",
         evaluation: str = "fine-tune") -> Path:
    """A grid: one row per downstream set, one column per compared init; in each panel, one
    line per rung of init − baseline against k with its 95% t-interval, and zero marked."""
    per_rung = {r: differences(rep, evaluation) for r, rep in reports.items()}
    datasets = sorted({d for diffs in per_rung.values() for d in diffs})
    shown = [i for i in COMPARED if any(i in d.get(ds, {}) for d in per_rung.values()
                                        for ds in datasets)]
    fig, axes = plt.subplots(len(datasets), len(shown), squeeze=False, sharex=True,
                             figsize=(4.2 * len(shown), 3.0 * len(datasets)))
    for row, dataset in enumerate(datasets):
        for col, init in enumerate(shown):
            ax = axes[row][col]
            for shift, (rung, diffs) in enumerate(per_rung.items()):
                by_k = diffs.get(dataset, {}).get(init)
                if not by_k:
                    continue
                ks = sorted(int(k) for k in by_k)
                stats = [by_k[str(k)][metric] for k in ks]
                half = [0.0 if math.isnan(s["half_width"]) else s["half_width"] for s in stats]
                nudged = [k * 2 ** (0.08 * (shift - (len(per_rung) - 1) / 2)) for k in ks]
                ax.errorbar(nudged, [s["mean"] for s in stats], yerr=half, marker="o",
                            capsize=3, label=rung)
            ax.axhline(0.0, color="grey", linewidth=1)
            ax.set_xscale("log", base=2)
            ax.grid(alpha=0.3)
            ax.set_title(f"{dataset}: {init} − baseline", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{METRICS[metric]} difference")
            if row == len(datasets) - 1:
                ax.set_xlabel("training samples k (log2)")
            if row == 0 and col == 0:
                ax.legend(fontsize=8, title="rung")
    fig.suptitle(f"{evaluation}: paired difference from the baseline per rung, 95% t-interval")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def write(reports: dict[str, dict], out: Path) -> list[Path]:
    """``ladder.md`` and one ``ladder-<evaluation>.png`` per evaluation the rungs have."""
    files = [atomic_write(out / "ladder.md", markdown(reports))]
    for evaluation in EVALUATIONS:
        if any(differences(rep, evaluation) for rep in reports.values()):
            name = "ladder-" + evaluation.replace(" ", "-") + ".png"
            files.append(plot(reports, out / name, evaluation=evaluation))
    return files
