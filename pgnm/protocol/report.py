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
from pgnm.protocol.stats import paired_difference, t_interval  # noqa: E402

METRICS = {"f1_macro": "macro-F1", "balanced_accuracy": "balanced accuracy",
           "auroc_macro_ovr": "macro one-vs-rest AUC"}
SANITY_METRIC = "balanced_accuracy"  # chance is 1 / C whatever the class balance of the test set
PIXELS_ROW = "pixels"  # pgnm.protocol.probe.PIXELS, the row every table shows for reference


def write_json(path: Path, data: object) -> Path:
    return atomic_write(path, json.dumps(data, indent=1, allow_nan=True))


def read_rows(path: Path, also: tuple[str, ...] = (),
              missing: dict[str, object] | None = None) -> dict[tuple, dict]:
    """Finished rows of ``trials.jsonl`` / ``probes.jsonl`` by (init, dataset, k, trial, *also);
    a line cut short by a crash is ignored (that row is redone). ``missing`` fills an ``also``
    field that older rows were written without."""
    rows, missing = {}, missing or {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        row = {**{f: missing[f] for f in also if f not in row and f in missing}, **row}
        rows[(row["init"], row["dataset"], row["k"], row["trial"], *(row[f] for f in also))] = row
    return rows


def choose_lr(rows: list[dict], select_on: str) -> list[dict]:
    """Per (init, dataset, k, trial), the row (one per lr) whose selected epoch has the best val
    ``select_on`` (``selected_value``): lowest for the loss, highest otherwise. A non-finite
    value (a diverged run) is never preferred; ties go to the smaller lr."""
    sign = 1.0 if select_on == "loss" else -1.0

    def badness(row: dict) -> float:
        value = row.get("selected_value")
        return sign * value if value is not None and math.isfinite(value) else math.inf

    best: dict[tuple, dict] = {}
    for row in sorted(rows, key=lambda r: r["lr"]):
        key = (row["init"], row["dataset"], row["k"], row["trial"])
        if key not in best or badness(row) < badness(best[key]):
            best[key] = row
    return list(best.values())


def lr_counts(chosen: list[dict]) -> dict:
    """dataset -> init -> lr -> how many draws chose it."""
    out: dict = {}
    for row in chosen:
        by_lr = out.setdefault(row["dataset"], {}).setdefault(row["init"], {})
        by_lr[str(row["lr"])] = by_lr.get(str(row["lr"]), 0) + 1
    return out


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


def paired(trials: list[dict], baseline: str) -> dict:
    """dataset -> init -> k -> metric -> paired_difference(init, ``baseline``) over the draws
    (trial numbers) both were fine-tuned on; the baseline itself and cells without it are left
    out. Draws are shared across initialisations, so this is the test of "is it better than
    the baseline at k shots", which independent per-init intervals answer only loosely."""
    by_draw = {(t["dataset"], t["init"], t["k"], t["trial"]): t["metrics"] for t in trials}
    out: dict = {}
    for dataset, init, k in sorted({key[:3] for key in by_draw}):
        if init == baseline:
            continue
        draws = sorted(trial for (d, i, kk, trial) in by_draw
                       if (d, i, kk) == (dataset, init, k) and (d, baseline, k, trial) in by_draw)
        if not draws:
            continue
        mine = [by_draw[(dataset, init, k, trial)] for trial in draws]
        theirs = [by_draw[(dataset, baseline, k, trial)] for trial in draws]
        out.setdefault(dataset, {}).setdefault(init, {})[str(k)] = {
            m: paired_difference([r[m] for r in mine], [r[m] for r in theirs]) for m in METRICS}
    return out


def sanity(evaluations: dict[str, dict], pixels: dict, chance: dict[str, float]) -> list[dict]:
    """Cells where an initialisation is at chance although the pixel baseline learns the set.

    ``evaluations``: name ("fine-tune", "linear probe") -> :func:`summarise` output; ``pixels``:
    dataset -> k -> metric -> interval of the pixel baseline; ``chance``: dataset -> 1 / C.
    On balanced accuracy: the baseline learns when its 95% interval lies above chance; an
    initialisation is at chance when its interval reaches down to chance. With one trial (no
    interval) the means decide, with margins of 0.1 and 0.05.
    """
    flags = []
    for evaluation, summary in evaluations.items():
        for dataset, by_init in summary.items():
            level = chance[dataset]
            for init, by_k in by_init.items():
                for k, stats in by_k.items():
                    pix = pixels.get(dataset, {}).get(k, {}).get(SANITY_METRIC)
                    mine = stats[SANITY_METRIC]
                    if pix is None or init == PIXELS_ROW:
                        continue
                    learns = (pix["ci_low"] > level if not math.isnan(pix["ci_low"])
                              else pix["mean"] > level + 0.1)
                    at_chance = (mine["ci_low"] <= level if not math.isnan(mine["ci_low"])
                                 else mine["mean"] <= level + 0.05)
                    if learns and at_chance:
                        flags.append({"evaluation": evaluation, "dataset": dataset,
                                      "init": init, "k": int(k), "chance": level,
                                      SANITY_METRIC: mine["mean"],
                                      f"pixels_{SANITY_METRIC}": pix["mean"]})
    return flags


def _sanity_lines(flags: list[dict]) -> list[str]:
    lines = ["### Sanity check", "",
             "An initialisation whose balanced accuracy cannot be told from chance on a set the "
             "pixel baseline learns (its 95% interval above chance) is flagged: the recipe did "
             "not let it learn, so its cells say nothing about the initialisation.", ""]
    if not flags:
        return lines + ["No cell flagged.", ""]
    lines += ["| evaluation | set | init | k | balanced accuracy | pixels | chance |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {f['evaluation']} | {f['dataset']} | {f['init']} | {f['k']} | "
              f"{f[SANITY_METRIC]:.3f} | {f['pixels_' + SANITY_METRIC]:.3f} | "
              f"{f['chance']:.3f} |" for f in flags]
    return lines + [""]


def interval_cell(stat: dict, signed: bool = False) -> str:
    """``mean [low, high]`` of a t-interval; ``signed`` for differences."""
    form = "+.3f" if signed else ".3f"
    if math.isnan(stat["mean"]):
        return "n/a"
    if math.isnan(stat["half_width"]):
        return f"{stat['mean']:{form}}"
    return f"{stat['mean']:{form}} [{stat['ci_low']:{form}}, {stat['ci_high']:{form}}]"


def _paired_cell(stat: dict) -> str:
    if math.isnan(stat["mean"]):
        return "n/a"
    text = f"{stat['mean']:+.3f}"
    if not math.isnan(stat["half_width"]):
        text += f" [{stat['ci_low']:+.3f}, {stat['ci_high']:+.3f}]"
    if not math.isnan(stat["p_wilcoxon"]):
        p_t = "n/a" if math.isnan(stat["p_ttest_rel"]) else f"{stat['p_ttest_rel']:.2g}"
        text += f" (t p={p_t}, W p={stat['p_wilcoxon']:.2g})"
    return text


def _paired_tables(differences: dict, baseline: str, sizes: list[int],
                   what: str = "") -> list[str]:
    lines = [f"Paired differences against **{baseline}** (the same draws): mean [95% t-interval]"
             " (paired t-test p, Wilcoxon signed-rank p), macro-F1.", ""]
    for dataset, by_init in differences.items():
        lines += [f"### {dataset}: macro-F1 minus {baseline}{what}", "",
                  "| init | " + " | ".join(f"k={k}" for k in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for init, by_k in by_init.items():
            cells = [_paired_cell(by_k[str(k)]["f1_macro"]) if str(k) in by_k else ""
                     for k in sizes]
            lines.append(f"| {init} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _tables(summary: dict, sizes: list[int], what: str) -> list[str]:
    lines = []
    for dataset, by_init in summary.items():
        for metric, title in METRICS.items():
            lines += [f"### {dataset}: {title}{what}", "",
                      "| init | " + " | ".join(f"k={k}" for k in sizes) + " |",
                      "|---|" + "---|" * len(sizes)]
            for init, by_k in by_init.items():
                cells = [interval_cell(by_k[str(k)][metric]) if str(k) in by_k else ""
                         for k in sizes]
                lines.append(f"| {init} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def _lr_lines(counts: dict, lrs: list[float], select_on: str) -> list[str]:
    lines = ["## Learning rate", "", f"Each draw was fine-tuned at every lr of {lrs} and keeps "
             f"the one whose best epoch has the best val {select_on}; the tables above are "
             "those. Draws that chose each lr:", "",
             "| set | init | " + " | ".join(f"lr {lr}" for lr in lrs) + " |",
             "|---|---|" + "---|" * len(lrs)]
    for dataset, by_init in counts.items():
        lines += [f"| {dataset} | {init} | " + " | ".join(str(by_lr.get(str(lr), 0))
                                                         for lr in lrs) + " |"
                  for init, by_lr in by_init.items()]
    return lines + [""]


def markdown(summary: dict, sizes: list[int], trials: int, notes: dict[str, str],
             differences: dict | None = None, baseline: str = "",
             data_notes: dict[str, str] | None = None, probe: dict | None = None,
             probe_differences: dict | None = None, flags: list[dict] | None = None,
             lr_search: dict | None = None) -> str:
    """One table per dataset and metric: mean [95% t-interval] over the trials, per k; then,
    given ``differences`` (:func:`paired`), one table per dataset of the paired differences;
    the lrs the draws chose (``lr_search``: lrs, select_on, counts from :func:`lr_counts`);
    the same for the linear probe (``probe``, a :func:`summarise` output) and the sanity
    check's ``flags`` (:func:`sanity`)."""
    lines = [f"Mean over {trials} trials per cell [95% t-interval], full test split.", ""]
    lines += _tables(summary, sizes, "")
    if differences:
        lines += _paired_tables(differences, baseline, sizes)
    if lr_search:
        lines += _lr_lines(lr_search["chosen"], lr_search["lrs"], lr_search["select_on"])
    if probe:
        lines += ["## Linear probe", "", "Logistic regression on each initialisation's frozen "
                  "features of the same draws (the pixels row: on raw pixels).", ""]
        lines += _tables(probe, sizes, " (linear probe)")
        if probe_differences:
            lines += _paired_tables(probe_differences, baseline, sizes, " (linear probe)")
    if flags is not None:
        lines += _sanity_lines(flags)
    if notes:
        lines += ["Initialisations:", ""] + [f"- **{n}**: {text}" for n, text in notes.items()]
    if data_notes:
        lines += ["", "Data sets:", ""] + [f"- **{n}**: {text}" for n, text in data_notes.items()]
    return "\n".join(lines) + "\n"


def plot(summary: dict, dataset: str, path: Path, metric: str = "f1_macro",
         differences: dict | None = None, baseline: str = "",
         what: str = "few-shot fine-tuning") -> Path:
    """Mean metric vs k (log2 axis) with 95% CI bands, one line per initialisation; given
    ``differences`` (:func:`paired`), a second panel of each init's paired difference from
    ``baseline`` with its 95% t-interval, in the same colours."""
    paired_panel = bool(differences and differences.get(dataset))
    fig, axes = plt.subplots(1, 2 if paired_panel else 1, squeeze=False,
                             figsize=(12.0 if paired_panel else 6.4, 4.2))
    ax, colours = axes[0][0], {}
    for init, by_k in summary[dataset].items():
        ks = sorted(int(k) for k in by_k)
        stats = [by_k[str(k)][metric] for k in ks]
        mean = [s["mean"] for s in stats]
        line, = ax.plot(ks, mean, marker="o", label=init,
                        linestyle="--" if init == PIXELS_ROW else "-")
        colours[init] = line.get_color()
        low = [s["ci_low"] if not math.isnan(s["ci_low"]) else s["mean"] for s in stats]
        high = [s["ci_high"] if not math.isnan(s["ci_high"]) else s["mean"] for s in stats]
        ax.fill_between(ks, low, high, color=line.get_color(), alpha=0.15)
    ax.set_ylabel(f"{METRICS[metric]} (test)")
    ax.set_title(f"{dataset}: {what}, mean and 95% t-interval")
    if paired_panel:
        right = axes[0][1]
        for init, by_k in differences[dataset].items():
            ks = sorted(int(k) for k in by_k)
            stats = [by_k[str(k)][metric] for k in ks]
            half = [0.0 if math.isnan(s["half_width"]) else s["half_width"] for s in stats]
            right.errorbar(ks, [s["mean"] for s in stats], yerr=half, marker="o", capsize=3,
                           color=colours.get(init), label=init)
        right.axhline(0.0, color="grey", linewidth=1)
        right.set_ylabel(f"{METRICS[metric]} minus {baseline}")
        right.set_title(f"paired differences from {baseline} (same draws), 95% t-interval")
    for axis in axes[0]:
        axis.set_xscale("log", base=2)
        axis.set_xlabel("training samples k (log2)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
