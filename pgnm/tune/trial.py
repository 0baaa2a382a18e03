"""One trial: stage 1 with the sampled settings, then a short stage 2, reported epoch by epoch.

The trial runs the real trainer (``pgnm.train.fit``) in its Ray worker process: in-process with
one rank (``tune.workers_per_trial = 1``, the CPU default), or as every rank of a Ray Train
``TorchTrainer`` (more workers; Ray owns the rendezvous, so no launcher and no fixed port).

After each epoch it reports to Tune (``pgnm.tune.report``) with a Tune checkpoint: the trainer's
latest complete checkpoint plus ``trial.json`` (which stage, the heated model). A retried trial
copies that checkpoint back and resumes the stage exactly where it stood.

ASHA compares trials at equal iterations. While stage 1 runs, the score is the stage-1
counterpart of ``tune.metric`` (``finetune/val_macro_f1`` -> ``pretrain/val_macro_f1``: the
heated classifier on clean validation images); from stage 2 on, the metric itself.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pgnm.config import Config, TuneConfig, with_overrides
from pgnm.names import Metric, Stage
from pgnm.train import fit
from pgnm.train.checkpoint import resolve_resume
from pgnm.train.distributed import gather_objects, setup
from pgnm.train.result import FitResult
from pgnm.tune import runs

STATE_FILE = "trial.json"
SCORE = "score"  # the key schedulers compare; see the module docstring


@dataclass(frozen=True)
class SearchContext:
    """What every trial of one search shares (pickled into each trial's process)."""

    base: Config
    search_dir: str
    tracking_uri: str | None  # None: tracking disabled
    experiment_id: str | None
    search_run_id: str | None
    train_storage: str | None = None  # multi-rank trials' Ray Train runs; None: <search_dir>/train


@dataclass
class TrialState:
    """Where a trial stands; saved in each Tune checkpoint as ``trial.json``."""

    stage: str = Stage.PRETRAIN.value  # as trial.json stores it
    checkpoint: str | None = None  # the trainer checkpoint folder inside the Tune checkpoint
    heated: str | None = None  # stage 1's model: registry URI or model.pt path
    heated_model_id: str | None = None
    heated_run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# What a trial reports per stage, as <stage>/<name>: enough to rank and read, not every metric
# (Tune prints a column per reported key).
REPORTED = Metric.REPORTED


def metric_names() -> list[str]:
    """Names a trial reports for each stage (``<stage>/<name>``)."""
    return sorted([*REPORTED.values(), Metric.REPORTED_TRAIN_LOSS])


def stage_metrics(stage: Stage, record: dict[str, Any]) -> dict[str, float]:
    """An epoch record as a trial reports it: ``<stage>/val_macro_f1`` and the like."""
    prefix = Stage(stage).value
    plain = {name: Metric.evaluated(Metric.PLAIN, key) for key, name in REPORTED.items()}
    out = {f"{prefix}/{name}": record[key] for name, key in plain.items() if key in record}
    out[f"{prefix}/{Metric.REPORTED_TRAIN_LOSS}"] = record[Metric.TRAIN_LOSS]
    return out


def score(metric: str, metrics: dict[str, float]) -> float | None:
    if metric in metrics:
        return metrics[metric]
    counterpart = f"{Stage.PRETRAIN.value}/" + metric.split("/", 1)[1]
    return metrics.get(counterpart)


def trial_device(tune: TuneConfig) -> str:
    """A trial's device follows its Ray resources: without GPUs, ``auto`` would put every
    concurrent trial on GPU 0 (Ray leaves CUDA_VISIBLE_DEVICES alone then)."""
    return "cuda" if tune.gpus_per_worker > 0 else "cpu"


def stage_configs(context: SearchContext, params: dict[str, Any], trial_id: str,
                  trial_run_id: str | None, state: TrialState) -> tuple[Config, Config | None]:
    """Stage 1's config (the base with the sampled values) and stage 2's (or None)."""
    base, tune = context.base, context.base.tune
    run_dir = str(Path(context.search_dir) / "trials" / trial_id)
    shared = {"run_dir": run_dir, "engine.resume": "never", "engine.device": trial_device(tune),
              "tracking.uri": context.tracking_uri, "tracking.parent_run_id": trial_run_id}
    arch = params.get("model.arch", base.model.arch)
    first = with_overrides(base, {
        **params, **shared, "name": f"{base.name}-{trial_id}-pretrain",
        # trial models get their own registry names; only the search's best joins the main one
        "tracking.registered_model": f"pgnm-tune-heated-{arch}",
    }, f"trial {trial_id}")
    if tune.finetune_epochs == 0:
        return first, None
    second = with_overrides(first, {
        "policy.enabled": False, "model.init": state.heated,
        "schedule.epochs": tune.finetune_epochs, "name": f"{base.name}-{trial_id}-finetune",
        "tracking.registered_model": f"pgnm-tune-finetuned-{arch}",
        **tune.finetune_overrides,
    }, f"trial {trial_id} stage 2 (tune.finetune_overrides)")
    return first, second


def _restore(checkpoint_dir: str | None, trial_dir: Path) -> TrialState:
    if checkpoint_dir is None:
        return TrialState()
    state = TrialState(**json.loads((Path(checkpoint_dir) / STATE_FILE).read_text()))
    if state.checkpoint:  # back where the trainer looks for it, also on another node
        local = trial_dir / "restored" / state.stage / state.checkpoint
        if not local.exists():
            shutil.copytree(Path(checkpoint_dir) / state.checkpoint, local)
        state.checkpoint = str(local)
    return state


def _node_id() -> str:
    """The Ray node this rank runs on: which machine a trial used, in search.json."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


Report = Callable[..., None]  # tune.report or ray.train.report: (metrics, checkpoint=...)
MakeCheckpoint = Callable[[str], Any]  # ray.tune / ray.train Checkpoint.from_directory


class TrialRunner:
    """Runs both stages for one trial on this rank, reporting after every epoch."""

    def __init__(self, context: SearchContext, params: dict[str, Any], trial_id: str,
                 restored: str | None, report: Report, make_checkpoint: MakeCheckpoint,
                 is_main: bool = True) -> None:
        self.context, self.params, self.trial_id = context, params, trial_id
        self.report, self.make_checkpoint, self.is_main = report, make_checkpoint, is_main
        self.trial_dir = Path(context.search_dir) / "trials" / trial_id
        self.state = _restore(restored, self.trial_dir)
        self.retried = restored is not None
        self.metric = context.base.tune.metric
        self.iteration = 0
        self.run_id: str | None = None
        self.last_record: dict = {}

    def run(self) -> None:
        ctx = self.context
        # the process group exists before ranks exchange ids
        setup(trial_device(ctx.base.tune), ctx.base.engine.deterministic)
        existed = False
        if self.is_main and ctx.tracking_uri:
            self.run_id, existed = runs.open_trial_run(
                ctx.tracking_uri, ctx.experiment_id, ctx.search_run_id, self.trial_id, self.params)
        self.run_id, existed = gather_objects((self.run_id, existed))[0]
        self.retried = self.retried or existed  # also a crash before the first checkpoint
        first, second = stage_configs(ctx, self.params, self.trial_id, self.run_id, self.state)
        result: FitResult | None = None
        if self.state.stage == Stage.PRETRAIN:
            result = self._stage(first, Stage.PRETRAIN, last=second is None)
            registered = result.registered
            heated = registered.model_uri if registered else (result.model and str(result.model))
            self.state = TrialState(Stage.FINETUNE.value, None, *gather_objects(
                (heated, registered and registered.model_id, result.mlflow_run_id))[0])
        if second is not None:
            _, second = stage_configs(ctx, self.params, self.trial_id, self.run_id, self.state)
            result = self._stage(second, Stage.FINETUNE, last=True)
        assert result is not None, f"trial {self.trial_id}: no stage ran"
        self._final(result)

    def _stage(self, config: Config, stage: Stage, last: bool) -> FitResult:
        if self.state.checkpoint:  # resuming this stage after a retry
            config = with_overrides(config, {"engine.resume": self.state.checkpoint}, "retry")
        epochs = config.schedule.epochs

        def on_epoch(run, epoch: int, record: dict) -> None:  # noqa: ANN001 - pgnm.train Run
            self.last_record = record
            if last and epoch == epochs - 1:
                return  # the final result is reported after the model is logged (_final)
            self._report(stage, record, run.out_dir / "checkpoints")

        return fit(config, stage, on_epoch=on_epoch)

    def _metrics(self, stage: Stage, record: dict) -> dict[str, Any]:
        metrics: dict[str, Any] = {**stage_metrics(stage, record), "stage": stage.value,
                                   "retried": int(self.retried), "node_id": _node_id()}
        metrics[SCORE] = score(self.metric, metrics)
        return metrics

    def _report(self, stage: Stage, record: dict, checkpoints: Path) -> None:
        self.iteration += 1
        metrics = self._metrics(stage, record)
        if not self.is_main:
            self.report(metrics, checkpoint=None)
            return
        if self.run_id:
            runs.log_metrics(self.context.tracking_uri, self.run_id, metrics, self.iteration)
        latest = resolve_resume("auto", checkpoints)
        with tempfile.TemporaryDirectory(prefix=".report-", dir=self.trial_dir) as tmp:
            state = TrialState(**{**asdict(self.state), "stage": stage.value,
                                  "checkpoint": None})
            if latest is not None:
                shutil.copytree(latest, Path(tmp) / latest.name)
                state.checkpoint = latest.name
            (Path(tmp) / STATE_FILE).write_text(json.dumps(asdict(state)))
            self.report(metrics, checkpoint=self.make_checkpoint(tmp))

    def _final(self, result: FitResult) -> None:
        """Close the trial run, then the last report: ASHA may stop the trial right there."""
        # A retry that resumed at the end of its stage ran no epoch here: the result's
        # final evaluation stands in for the last epoch's record.
        record = self.last_record or {**result.final, Metric.TRAIN_LOSS: float("nan")}
        metrics = self._metrics(result.stage, record)
        metrics.update(done_stages=2 if result.stage == Stage.FINETUNE else 1,
                       heated_model_id=self.state.heated_model_id or "",
                       heated_run_id=self.state.heated_run_id or "",
                       heated=self.state.heated or "")
        if self.is_main and self.run_id:
            self.iteration += 1
            runs.log_metrics(self.context.tracking_uri, self.run_id, metrics, self.iteration)
            runs.end_run(self.context.tracking_uri, self.run_id)
        self.report(metrics)
