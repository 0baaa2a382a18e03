"""Where a run's records go: ``metrics.jsonl`` and MLflow, behind start, log and finish.

Rank 0 opens (or, resuming, reopens) the MLflow run and logs what defines it: the config, the
DeepSpeed config, the data manifest and its splits as dataset inputs, the lineage of
``model.init``; and it opens the run's LoggedModel, which its epoch metrics name. Every rank
counts the records (a checkpoint stores the count); only rank 0 writes them. ``finish`` saves
the model, draws the curves, logs the classifier into its LoggedModel, registers it and closes
the run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from pgnm.atomic import atomic_write
from pgnm.config import Config, dump_config, flatten
from pgnm.data.manifest import ClassInfo, load_classes, load_dataset_info
from pgnm.method.step import PGNMModel
from pgnm.names import Stage, Tag
from pgnm.tracking import (
    Tracker,
    declare_model_input,
    log_classifier,
    open_logged_model,
    open_run,
    split_datasets,
)
from pgnm.train import outputs
from pgnm.train.distributed import World, gather_objects
from pgnm.train.engine import deepspeed_config
from pgnm.train.portable import write_portable
from pgnm.train.result import FitResult


class RunLog:
    def __init__(self, tracker: Tracker, metrics: outputs.MetricLog, stage: Stage,
                 source_tags: dict[str, str]) -> None:
        self.tracker, self.metrics, self.stage = tracker, metrics, stage
        self.source_tags = source_tags  # where model.init came from, for lineage

    @classmethod
    def start(cls, config: Config, stage: Stage, world: World, out_dir: Path,
              resume: tuple[str | None, int] | None, source_tags: dict[str, str]) -> RunLog:
        """``resume``: the checkpoint's (MLflow run id, records logged), or None for a new run."""
        run_id, records = resume or (None, 0)
        tracker = _open_tracker(config, stage, world, out_dir, run_id, source_tags)
        metrics = outputs.MetricLog(out_dir / "metrics.jsonl", world.is_main, tracker)
        if resume is not None:
            metrics.resume(records)
        return cls(tracker, metrics, stage, source_tags)

    @property
    def count(self) -> int:
        return self.metrics.count

    def log(self, record: dict) -> None:
        self.metrics.log(record)

    def artifact(self, path: Path, folder: str | None = None) -> None:
        self.tracker.log_artifact(path, folder)

    def fail(self, requested: bool) -> None:
        """A crash (FAILED), or a stop someone asked for (KILLED: a search's scheduler). Either
        way the run's LoggedModel never got its model: FAILED (MLflow has no other end state
        for a model; the run's status tells the two apart)."""
        self.tracker.fail_model()
        self.tracker.close("KILLED" if requested else "FAILED", timeout=10)

    def finish(self, result: FitResult, model: PGNMModel, config: Config,
               classes: list[ClassInfo]) -> FitResult:
        """Rank 0: the model file, curves, registry entry and summary; then close the run."""
        names = [c.key for c in classes]
        model_file = outputs.save_model(model, config, names, result.out_dir, self.stage)
        lineage = {**self.source_tags, **({"mlflow_run_id": self.tracker.run_id}
                                          if self.tracker.run_id else {})}
        write_portable(model.classifier, config, names, result.out_dir / "model" / "timm",
                       self.stage, result.final, lineage)
        curves = outputs.plot_curves(self.metrics.records(), result.out_dir / "curves.png",
                                     f"{config.name} ({self.stage})")
        registered, tracker = None, self.tracker
        if tracker.run_id is not None and config.tracking.log_model:
            tags = {Tag.BASELINE: str(_is_baseline(config, self.stage)).lower(),
                    **self.source_tags}
            try:
                registered = log_classifier(tracker.tracking_uri, tracker.run_id,
                                            model.classifier, model_file, config, self.stage,
                                            tags, model_id=tracker.model_id)
            except Exception as err:  # the store is down: the local model.pt is still there
                print(f"warning: could not log or register the model in MLflow: {err}")
                tracker.fail_model()
        result = replace(result, model=model_file, curves=curves, registered=registered,
                         mlflow_run_id=tracker.run_id, tracking_uri=tracker.tracking_uri)
        for path in (curves, result.write()):
            if path is not None:
                tracker.log_artifact(path)
        fallback = tracker.close("FINISHED")
        if fallback is not None:
            result = replace(result, mlflow_fallback=Path(fallback))
            result.write()
        return result


def _is_baseline(config: Config, stage: Stage) -> bool:
    return stage == Stage.FINETUNE and config.model.init is None


def _open_tracker(config: Config, stage: Stage, world: World, out_dir: Path,
                  resume_run_id: str | None, source_tags: dict[str, str]) -> Tracker:
    """Rank 0 opens (or resumes) the MLflow run and logs what defines it; others get a no-op."""
    if not world.is_main:  # learns the run id, logs nothing
        return Tracker(gather_objects(None)[0], None, out_dir, enabled=False)
    data = load_dataset_info(config.data.root)
    tags = {Tag.BASELINE: str(_is_baseline(config, stage)).lower(),
            Tag.DATA_PLAN_HASH: data.plan_hash,
            Tag.DATA_SAMPLES: str(data.splits["train"].samples),
            Tag.DATA_SHARDS: str(sum(len(s.shards) for s in data.splits.values())),
            **source_tags}
    tracker = open_run(config, stage, out_dir, resume_run_id, tags)
    gather_objects(tracker.run_id)
    if tracker.run_id and config.tracking.log_model:
        try:
            tracker.model_id = open_logged_model(tracker.tracking_uri, tracker.run_id, stage,
                                                 flatten(config))
        except Exception as err:  # then log_model makes one at the end, its metrics unlinked
            print(f"warning: could not create the run's LoggedModel in MLflow: {err}")
    if tracker.enabled:  # again on a resume: it adds no input, but links the metrics sent
        tracker.log_datasets(split_datasets(config.data.root, data,
                                            len(load_classes(config.data.root))))
    if resume_run_id is None:
        tracker.log_params(flatten(config))
        files = {"config.yaml": dump_config(config),
                 "deepspeed_config.json": json.dumps(deepspeed_config(config, world.world_size))}
        for name, text in files.items():
            tracker.log_artifact(atomic_write(out_dir / name, text))
        tracker.log_artifact(Path(config.data.root) / "dataset.json", "data")
        if tracker.run_id and source_tags.get(Tag.SOURCE_MODEL_ID):
            try:
                declare_model_input(tracker.tracking_uri, tracker.run_id,
                                    source_tags[Tag.SOURCE_MODEL_ID])
            except Exception as err:  # lineage tags still record the edge
                print(f"warning: could not declare the model input in MLflow: {err}")
    return tracker
