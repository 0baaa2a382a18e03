"""Does a few-shot difference survive when each initialisation gets its own learning rate?

    python -m benchmarks.fewshot_lr --protocol runs/ladder/small/fewshot-paper \
        --inits baseline heated-paper random-mask --sizes 256 --lrs 0.02 0.05 0.1 --json OUT

The protocol fine-tunes every initialisation with one recipe. One learning rate can suit one
initialisation and not another (a heated model trained at lr x S may want a larger one than the
baseline), so a difference at one lr can be the recipe's, not the features'. This re-runs the
protocol's own fine-tunes (same subsets, seeds, early stopping and test split, read from its
``fewshot.json``) at each lr in ``--lrs``, picks per (initialisation, set, k, trial) the lr whose
selected epoch has the lowest val loss (the test split plays no part in the choice), and reports
init − baseline at that choice with paired 95% t-intervals, beside the same at each fixed lr.

The protocol itself does the same for every cell with ``fewshot.lrs``; this is the cheap check
of a protocol that already ran, on the models it trained, for a few initialisations and sizes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pgnm.atomic import atomic_write
from pgnm.config import load_config, with_overrides
from pgnm.protocol.fewshot import finetune_config, finetune_once, subset_dir
from pgnm.protocol.inits import Resolved
from pgnm.protocol.report import choose_lr, paired, read_rows


def recipe(report: dict) -> Any:  # noqa: ANN401 - a pgnm Config
    """The protocol's fine-tune recipe, rebuilt from what its fewshot.json recorded."""
    selection = report["selection"]
    return with_overrides(load_config(), {
        **report["recipe"], "fewshot.selection": selection["rule"],
        "fewshot.patience": selection["patience"], "fewshot.select_on": selection["select_on"],
        "fewshot.min_steps": selection["min_steps"]}, "fewshot.json recipe")


def run(protocol: Path, inits: list[str], sizes: list[int], lrs: list[float],
        trials: int | None) -> list[dict]:
    report = json.loads((protocol / "fewshot.json").read_text())
    if report["selection"] != {**report["selection"], "rule": "best_val", "select_on": "loss"}:
        raise SystemExit(f"fewshot_lr: {protocol}: needs fewshot.selection=best_val on the val "
                         f"loss, the protocol ran {report['selection']}")
    base = recipe(report)
    rows_file = protocol / "lr_sensitivity.jsonl"  # finished rows, so a re-run continues
    done = read_rows(rows_file, also=("lr",))
    for name in inits:
        init = Resolved(name, model=report["inits"][name]["model"])
        for dataset, by_k in report["draws"].items():
            for k in sizes:
                for draw in by_k[str(k)][:trials]:
                    for lr in lrs:
                        key = (name, dataset, k, draw["trial"], lr)
                        if key in done:
                            continue
                        config = with_overrides(base, {"optim.lr": lr}, "--lrs")
                        subset = subset_dir(protocol, dataset, k, draw["trial"])
                        ft = finetune_config(config, init, subset, k, draw["seed"],
                                             protocol / "lr-finetunes", None,
                                             report["mlflow"]["tracking_uri"])
                        row = finetune_once(ft, init, protocol / "logs" / "lr-finetunes.log")
                        done[key] = {"init": name, "dataset": dataset, "k": k,
                                     "trial": draw["trial"], "lr": lr, "seed": draw["seed"], **row}
                        with open(rows_file, "a") as handle:
                            handle.write(json.dumps(done[key]) + "\n")
                        print(json.dumps({field: done[key][field] for field in (
                            "init", "dataset", "k", "trial", "lr", "selected_value",
                            "selected_epoch", "seconds")}), flush=True)
    return list(done.values())


def analyse(rows: list[dict], baseline: str) -> dict:
    """init − baseline at each fixed lr, and with each row's lr chosen on its val loss."""
    out: dict[str, Any] = {"fixed": {}, "chosen_lr": {}}
    for lr in sorted({r["lr"] for r in rows}):
        out["fixed"][str(lr)] = paired([r for r in rows if r["lr"] == lr], baseline)
    chosen = sorted(choose_lr(rows, "loss"), key=lambda r: (r["init"], r["dataset"], r["k"],
                                                            r["trial"]))
    out["chosen_lr"] = paired(chosen, baseline)
    out["lr_chosen"] = {f"{r['init']}/{r['dataset']}/k{r['k']}/t{r['trial']}": r["lr"]
                        for r in chosen}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", type=Path, required=True,
                        help="a finished protocol's directory (its fewshot.json and subsets)")
    parser.add_argument("--inits", nargs="+", required=True, help="the baseline first")
    parser.add_argument("--sizes", nargs="+", type=int, required=True)
    parser.add_argument("--lrs", nargs="+", type=float, required=True)
    parser.add_argument("--trials", type=int, help="the first N trials only")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = run(args.protocol, args.inits, args.sizes, args.lrs, args.trials)
    result = {"protocol": str(args.protocol), "baseline": args.inits[0], "lrs": args.lrs,
              "sizes": args.sizes, "rule": "per (init, set, k, trial): the lr whose selected "
              "epoch has the lowest val loss", **analyse(rows, args.inits[0]), "rows": rows}
    atomic_write(args.json, json.dumps(result, indent=1, allow_nan=True))
    for dataset, by_init in result["chosen_lr"].items():
        for init, by_k in by_init.items():
            for k, stat in by_k.items():
                f1 = stat["f1_macro"]
                fixed = {lr: d[dataset][init][k]["f1_macro"]["mean"]
                         for lr, d in result["fixed"].items() if init in d.get(dataset, {})}
                print(f"{dataset} {init} k={k}: chosen lr {f1['mean']:+.3f} "
                      f"[{f1['ci_low']:+.3f}, {f1['ci_high']:+.3f}]; fixed "
                      + ", ".join(f"{lr}: {m:+.3f}" for lr, m in fixed.items()))
    return result


if __name__ == "__main__":
    main()
