"""The few-shot protocol: every initialisation x downstream set x k x trial, fine-tuned and tested.

``run_protocol(config)`` reads ``config.fewshot`` (see ``pgnm.config_fewshot.FewShotConfig``):

1. resolves the initialisations (``pgnm.protocol.inits``), training the recipes that need it;
2. shards each downstream set once and draws, per k and trial, a stratified subset with a
   recorded seed (the same draw for every initialisation: the comparison is paired);
3. fine-tunes each (initialisation, subset) in-process through ``pgnm.train.fit`` with the
   rest of ``config`` as the recipe (policy off, one rank, no model export), and evaluates the
   final classifier on the downstream set's full test split; with ``fewshot.lrs``, once per
   lr, each draw keeping the lr whose best epoch did best on the val split;
4. writes ``<run_dir>/<name>/fewshot.json`` (settings, initialisations and their lineage, draws
   with their sample keys, per-trial metrics, mean / sd / 95% t-intervals), ``fewshot.md`` and
   ``fewshot-<dataset>.png``, and logs them to an MLflow parent run whose children are the
   (initialisation, dataset) pairs, each the parent of its fine-tune runs.

Finished fine-tunes are appended to ``trials.jsonl``; a re-run skips them.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pgnm.atomic import atomic_write
from pgnm.config import Config, ConfigError, flatten, with_overrides
from pgnm.data import build_loader
from pgnm.data.manifest import ValCarving, load_classes, load_dataset_info
from pgnm.names import Stage, Tag
from pgnm.protocol import report, subsets
from pgnm.protocol.inits import InitResolver, Resolved, measured_s, with_controls
from pgnm.protocol.probe import PIXELS, probe_all
from pgnm.protocol.tracking import ProtocolTracker
from pgnm.protocol.workers import Job, run_jobs
from pgnm.train.evaluate import evaluate
from pgnm.train.loop import fit

TEST_KEYS = ("f1_macro", "balanced_accuracy", "auroc_macro_ovr", "top1", "loss")
STAGE_FIELDS = ("name", "stage", "model", "mlflow_run_id", "registered", "final")


@dataclass(frozen=True)
class ProtocolResult:
    report: dict[str, Any]  # what fewshot.json holds
    json_file: Path
    markdown_file: Path  # the tables, as printed by the launchers
    plots: list[Path]  # one few-shot curve PNG per dataset

    @property
    def files(self) -> list[Path]:
        return [self.json_file, self.markdown_file, *self.plots]


def _check(config: Config) -> None:
    fs = config.fewshot
    if not fs.datasets:
        raise ConfigError("fewshot.datasets is empty: name at least one downstream set")
    if not fs.inits:
        raise ConfigError("fewshot.inits is empty: name at least one initialisation")
    if fs.lrs and fs.selection != "best_val":
        raise ConfigError(f"fewshot.lrs={fs.lrs}: a learning rate is chosen per draw on the val "
                          f"split, which needs fewshot.selection=best_val (it is "
                          f"{fs.selection!r})")


def resolve_all(config: Config, store: str | None, root: Path) -> tuple[dict, dict]:
    """Every initialisation (the controls included), trained where its recipe says so."""
    fs = config.fewshot
    resolver = InitResolver(dict(fs.inits), store, root / "train", fit)
    s = None
    if fs.controls.effective_lr and fs.controls.lr_factor == "measured":
        s = measured_s(resolver(fs.controls.reference).stages)
    resolver.inits, notes = with_controls(fs, s)
    resolved = {name: resolver(name) for name in resolver.inits}
    for name, r in resolved.items():
        r.note = notes.get(name) or (f"from {r.uri}" if r.uri else "random initialisation")
    return resolved, notes


def draw_subsets(config: Config, root: Path) -> tuple[dict, dict]:
    """Shard the downstream sets and write every (k, trial) subset; returns info and draws."""
    fs = config.fewshot
    info, draws = {}, {}
    carving = ValCarving(fraction=fs.val_fraction, seed=fs.seed)  # for sets shipped without val
    for name, source in fs.datasets.items():
        shards = subsets.prepare_dataset(name, source, root / "data" / name, carving)
        subsets.check_splits(name, shards)
        labels, sources = subsets.train_labels(shards)
        classes = load_classes(shards)
        manifest = load_dataset_info(shards)
        splits, carved = manifest.splits, manifest.val_carved
        info[name] = {"source": source, "shards": str(shards), "classes": [c.key for c in classes],
                      **{f"{s}_samples": splits[s].samples for s in ("train", "val", "test")},
                      "val_carved_from_train": carved.model_dump() if carved else None}
        draws[name] = {}
        for k in fs.sizes:
            if k > len(labels):
                raise ConfigError(f"fewshot.sizes: k={k} but fewshot.datasets.{name} has only "
                                  f"{len(labels)} training samples")
            for trial in range(fs.trials):
                seed = subsets.trial_seed(fs.seed, name, k, trial)
                keys = subsets.stratified_sample(labels, k, seed)
                counts = {classes[c].key: sum(labels[key] == c for key in keys)
                          for c in sorted({labels[key] for key in keys})}
                draws[name].setdefault(str(k), []).append(
                    {"trial": trial, "seed": seed, "keys": keys,
                     "sources": [sources[key] for key in keys], "class_counts": counts})
        wanted = {key for per_k in draws[name].values() for d in per_k for key in d["keys"]}
        pending = [(k, d) for k, per_k in draws[name].items() for d in per_k
                   if not (subset_dir(root, name, int(k), d["trial"]) / "dataset.json").is_file()]
        samples = subsets.read_samples(shards, wanted) if pending else {}
        for k, d in tqdm(pending, desc=f"{name}: few-shot subsets", unit="subset",
                         disable=not pending):
            subsets.write_subset(shards, subset_dir(root, name, int(k), d["trial"]),
                                 samples, d["keys"])
    return info, draws


def subset_dir(root: Path, dataset: str, k: int, trial: int) -> Path:
    """Where the protocol at ``root`` keeps draw ``trial`` of ``k`` samples from ``dataset``."""
    return root / "subsets" / dataset / f"k{k:04d}-t{trial:02d}"


def finetune_config(config: Config, init: Resolved, data_root: Path, k: int, seed: int,
                    run_dir: Path, parent: str | None, store: str | None,
                    lr: float | None = None) -> Config:
    """The recipe for one few-shot fine-tune: ``config`` with this subset and initialisation
    (and learning rate ``lr``, else the recipe's)."""
    batch = min(config.data.batch_size, k)
    epochs = config.schedule.epochs
    if config.fewshot.min_steps:  # tiny k: enough steps to move away from the initialisation
        epochs = max(epochs, math.ceil(config.fewshot.min_steps / (k // batch)))
    updates = {
        "name": f"{init.name}-{data_root.parent.name}-{data_root.name}",
        "run_dir": str(run_dir), "seed": seed % 2**31, "model.init": init.model,
        "model.num_classes": None, "data.root": str(data_root),  # fit turns the policy off
        "data.batch_size": batch, "schedule.epochs": epochs, "engine.resume": "never",
        "engine.checkpoints": False,  # a fine-tune of seconds is redone, never resumed
        "tracking.log_model": False, "tracking.parent_run_id": parent,
    }
    if lr is not None:
        updates["optim.lr"] = lr
        updates["name"] += f"-lr{lr:g}"
    if store is not None:
        updates["tracking.uri"] = store
    return with_overrides(config, updates, "few-shot fine-tune")


class BestEpoch:
    """``fewshot.selection=best_val``: the epoch whose val ``select_on`` is best so far, and a
    copy of the classifier's weights then."""

    def __init__(self, metric: str) -> None:
        self.key, self.lower_is_better = f"plain/{metric}", metric == "loss"
        self.epoch, self.value, self.weights = -1, math.nan, None

    def update(self, epoch: int, record: dict, classifier) -> None:  # noqa: ANN001 - nn.Module
        value = record[self.key]
        better = value < self.value if self.lower_is_better else value > self.value
        if self.epoch < 0 or better:
            self.epoch, self.value = epoch, value
            self.weights = {k: v.detach().clone() for k, v in classifier.state_dict().items()}


def finetune_once(config: Config, init: Resolved, log_file: Path) -> dict:
    """One fine-tune through ``fit``; its classifier (the best val epoch's, or the last's)
    scored on the full test split."""
    fs = config.fewshot
    result: dict = {}
    best = BestEpoch(fs.select_on) if fs.selection == "best_val" else None

    def on_epoch(run, epoch: int, record: dict) -> None:  # noqa: ANN001 - pgnm.train.loop.Run
        if epoch == run.start_epoch and run.log.tracker.run_id:
            run.log.tracker.set_tags({Tag.FEWSHOT_INIT: init.name, **init.tags})
            ProtocolTracker.declare_input(run.log.tracker, init.tags.get(Tag.SOURCE_MODEL_ID))
        if best is not None:
            best.update(epoch, record, run.model.classifier)
            patience_over = epoch - best.epoch >= fs.patience
            run.stop_requested = patience_over and run.global_step >= fs.min_steps
        if epoch + 1 < run.config.schedule.epochs and not run.stopped:
            return
        result["epochs_trained"] = epoch + 1
        if best is not None:  # test (and keep) the weights of the best val epoch
            run.model.classifier.load_state_dict(best.weights)
            result["epoch"], result["value"] = best.epoch, best.value
        loader = build_loader(run.config, "test", False, run.world.rank, run.world.world_size,
                              run.world.dali_device_id)
        metrics = evaluate(run.model, loader, run.world, run.config.seed).metrics
        tested = {key: metrics[f"plain/{key}"] for key in TEST_KEYS}
        result.update(tested)
        run.log.tracker.log_metrics({f"test/{k}": v for k, v in tested.items()}, run.global_step)

    out = Path(config.run_dir) / config.name
    shutil.rmtree(out, ignore_errors=True)  # a fine-tune cut short earlier starts again
    start = time.perf_counter()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        print(f"==== {config.name}", flush=True)
        trained = fit(config, Stage.FINETUNE, on_epoch)
    if not config.fewshot.keep_runs:
        shutil.rmtree(out, ignore_errors=True)
    selected, trained_epochs = result.pop("epoch", None), result.pop("epochs_trained")
    selected_value = result.pop("value", None)  # its val select_on: what chose the epoch
    return {"metrics": result, "run_id": trained.mlflow_run_id,
            "steps": trained.global_step, "epochs": config.schedule.epochs,
            "epochs_trained": trained_epochs, "selected_epoch": selected,
            "selected_value": selected_value,
            "batch_size": config.data.batch_size, "seconds": time.perf_counter() - start}


def run_protocol(config: Config) -> ProtocolResult:
    """Run (or finish) the protocol: ``fewshot.json``, the tables and the plots."""
    _check(config)
    root = Path(config.run_dir) / config.name
    tracker = ProtocolTracker(config, root)
    resolved, notes = resolve_all(config, tracker.store, root)
    datasets, draws = draw_subsets(config, root)
    tracker.start(flatten(config), resolved, datasets)
    try:
        rows = _finetune_all(config, root, resolved, datasets, draws, tracker)
        probes = probe_all(config, root, {n: r.model for n, r in resolved.items()}, datasets,
                           draws, lambda d, k, t: subset_dir(root, d, k, t)
                           ) if config.fewshot.probe else []
    except BaseException:
        tracker.fail()
        raise
    return write_outputs(config, root, resolved, datasets, draws, rows, notes, tracker, probes)


def _chosen(config: Config, rows: list[dict]) -> list[dict]:
    """One row per draw: its lr chosen on val when ``fewshot.lrs`` names several."""
    return report.choose_lr(rows, config.fewshot.select_on) if config.fewshot.lrs else rows


def _finetune_all(config: Config, root: Path, resolved: dict, datasets: dict, draws: dict,
                  tracker: ProtocolTracker) -> list[dict]:
    fs = config.fewshot
    trials_file = root / "trials.jsonl"
    lrs = fs.lrs or [config.optim.lr]
    # rows of an earlier run with more sizes, trials, lrs or initialisations stay on file,
    # unused; rows from before fewshot.lrs existed ran at the recipe's optim.lr
    rows = report.read_rows(trials_file, also=("lr",), missing={"lr": config.optim.lr})
    done = {key: row for key, row in rows.items() if key[0] in resolved and key[1] in datasets
            and key[2] in fs.sizes and key[3] < fs.trials and key[4] in lrs}
    children = {(i, d): tracker.child(i, d, init) for i, init in resolved.items()
                for d in datasets}
    jobs = []
    for (init_name, dataset), child in children.items():
        init = replace(resolved[init_name], stages=[])  # what a worker needs of it
        for k in fs.sizes:
            for draw, lr in [(d, lr) for d in draws[dataset][str(k)] for lr in lrs]:
                if (init_name, dataset, k, draw["trial"], lr) in done:
                    continue
                ft = finetune_config(config, init, subset_dir(root, dataset, k, draw["trial"]),
                                     k, draw["seed"], root / "finetunes", child, tracker.store,
                                     lr if fs.lrs else None)
                row = {"init": init_name, "dataset": dataset, "k": k, "trial": draw["trial"],
                       "seed": draw["seed"], "lr": lr}
                jobs.append(Job((init_name, dataset), row, (ft, init, row)))
    trials, left = list(done.values()), Counter(job.group for job in jobs)

    def finish(group: tuple[str, str]) -> None:
        tracker.finish_child(children[group], _chosen(config, [
            t for t in trials if (t["init"], t["dataset"]) == group]))

    for group in [g for g in children if not left[g]]:
        finish(group)
    bar = tqdm(total=len(done) + len(jobs), initial=len(done), desc="few-shot fine-tunes",
               unit="run", file=sys.stderr, dynamic_ncols=True)
    for job, row in run_jobs(jobs, fs.workers, finetune_row, root / "logs"):
        with open(trials_file, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        trials.append(row)
        bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in job.row.items() if k != "seed"))
        bar.update()
        left[job.group] -= 1
        if not left[job.group]:
            finish(job.group)
    bar.close()
    return trials


def finetune_row(config: Config, init: Resolved, row: dict, log_file: Path) -> dict:
    """One row of ``trials.jsonl``: ``row``'s key fields and the fine-tune's results."""
    return {**row, **finetune_once(config, init, log_file)}


def _data_notes(datasets: dict) -> dict[str, str]:
    notes = {}
    for name, info in datasets.items():
        carved = info.get("val_carved_from_train")
        if carved:
            notes[name] = (f"no val split shipped: {carved['fraction']:.0%} of each class's "
                           f"training samples carved into val (seed {carved['seed']}), "
                           f"{info['val_samples']} samples")
    return notes


def write_outputs(config: Config, root: Path, resolved: dict, datasets: dict, draws: dict,
                  rows: list[dict], notes: dict, tracker: ProtocolTracker,
                  probes: list[dict]) -> ProtocolResult:
    fs = config.fewshot
    trials = _chosen(config, rows)
    lr_search = {"lrs": fs.lrs, "select_on": fs.select_on, "chosen": report.lr_counts(trials),
                 "rows": sorted(rows, key=lambda t: (t["init"], t["dataset"], t["k"],
                                                     t["trial"], t["lr"]))} if fs.lrs else None
    summary = report.summarise(trials)
    baseline = fs.controls.baseline
    differences = report.paired(trials, baseline) if baseline in resolved else {}
    probe_summary = report.summarise(probes)
    probe_differences = report.paired([p for p in probes if p["init"] != PIXELS], baseline
                                      ) if baseline in resolved else {}
    pixels = {d: by_init[PIXELS] for d, by_init in probe_summary.items() if PIXELS in by_init}
    flags = report.sanity({"fine-tune": summary, "linear probe": probe_summary}, pixels,
                          {d: 1 / len(info["classes"]) for d, info in datasets.items()}
                          ) if probes else None
    shown = {d: {**by_init, **({PIXELS: pixels[d]} if d in pixels else {})}
             for d, by_init in summary.items()}  # every table shows what "learnable" means
    inits = {n: r.note for n, r in resolved.items()}
    if probes:
        inits[PIXELS] = (f"logistic regression on the raw pixels of the same draws (grey, "
                         f"{fs.pixel_size} px a side): no network")
    result = {
        "protocol": config.name, "sizes": fs.sizes, "trials_per_size": fs.trials,
        "seed": fs.seed, "confidence": 0.95, "interval": "Student t (scipy.stats.t), ddof=1",
        "recipe": {k: v for k, v in flatten(config).items() if not k.startswith(("fewshot.",
                                                                                  "tune."))},
        "inits": {n: {"model": r.model, "uri": r.uri, "tags": r.tags, "note": r.note,
                      "stages": [{k: s.to_json()[k] for k in STAGE_FIELDS} for s in r.stages]}
                  for n, r in resolved.items()},
        "datasets": datasets, "draws": draws,
        "trials": sorted(trials, key=lambda t: (t["init"], t["dataset"], t["k"], t["trial"])),
        "summary": summary,
        "paired": {"baseline": baseline, "tests": "scipy.stats.ttest_rel, scipy.stats.wilcoxon",
                   "differences": differences},
        "selection": {"rule": fs.selection, "patience": fs.patience, "select_on": fs.select_on,
                      "max_epochs": config.schedule.epochs, "min_steps": fs.min_steps},
        "lr_search": lr_search,  # every lr's row; "trials" holds each draw's chosen one
        "probe": {"model": "sklearn StandardScaler + LogisticRegression(max_iter=2000)",
                  "pixel_size": fs.pixel_size, "trials": probes, "summary": probe_summary,
                  "paired": probe_differences} if probes else None,
        "sanity": flags,
        "mlflow": {"tracking_uri": tracker.store, "parent_run_id": tracker.parent_id},
    }
    json_file = report.write_json(root / "fewshot.json", result)
    markdown_file = atomic_write(root / "fewshot.md", report.markdown(
        shown, fs.sizes, fs.trials, inits, differences, baseline, _data_notes(datasets),
        probe_summary, probe_differences, flags, lr_search))
    what = "few-shot fine-tuning" + (", lr chosen per draw" if fs.lrs else "")
    plots = [report.plot(shown, d, root / f"fewshot-{d}.png", differences=differences,
                         baseline=baseline, what=what) for d in summary]
    plots += [report.plot(probe_summary, d, root / f"fewshot-{d}-probe.png",
                          differences=probe_differences, baseline=baseline,
                          what="linear probe") for d in probe_summary]
    out = ProtocolResult(result, json_file, markdown_file, plots)
    tracker.finish(out.files, summary)
    return out
