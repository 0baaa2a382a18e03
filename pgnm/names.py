"""Names that cross boundaries: the training stages, the metric keys, the MLflow tag names.

Spelled once here so that the trainer, the tracker, the registry, a search and the few-shot
protocol cannot drift apart (a tag written as ``pgnm.stage`` and read as ``pgnm.Stage`` is a
lineage silently lost).
"""

from __future__ import annotations

from enum import Enum


class Stage(str, Enum):
    """What a training run is. ``fit`` owns what a stage implies: fine-tuning runs the
    classifier alone (the policy is off), whatever the config says."""

    PRETRAIN = "pretrain"  # stage 1: policy + classifier, the heated model comes out
    FINETUNE = "finetune"  # stage 2: the classifier alone, from model.init (or scratch)

    def __str__(self) -> str:
        return self.value

    @property
    def policy_allowed(self) -> bool:
        return self is Stage.PRETRAIN


class Metric:
    """Keys of an epoch record (``metrics.jsonl``, MLflow) and of what a search reports."""

    TRAIN_LOSS = "train/loss"
    TRAIN_CE = "train/ce"
    TRAIN_POLICY_TERM = "train/policy_term"
    TRAIN_IMG_S = "train/img_s"
    # evaluation variants: "plain" (clean images) and "masked" (the official masked eval)
    PLAIN = "plain"
    MASKED = "masked"

    @staticmethod
    def evaluated(variant: str, name: str) -> str:
        """``plain/f1_macro`` and the like: ``<variant>/<classification metric>``."""
        return f"{variant}/{name}"

    # what a search trial reports, per stage: "<stage>/<name>", from the plain evaluation
    REPORTED = {"f1_macro": "val_macro_f1", "top1": "val_top1",
                "balanced_accuracy": "val_balanced_accuracy", "auroc_macro_ovr": "val_auroc"}
    REPORTED_TRAIN_LOSS = "train_loss"

    # The data split a metric family is computed on; MLflow links the metric to that split's
    # dataset input (pgnm.tracking.datasets). Rates, policy parameters and counts have none.
    SPLIT_OF = {"train": "train", PLAIN: "val", MASKED: "val", "test": "test"}

    @staticmethod
    def split(key: str) -> str | None:
        return Metric.SPLIT_OF.get(key.split("/")[0]) if "/" in key else None


class Tag:
    """MLflow tag names pgnm writes and reads (runs and model versions)."""

    STAGE = "pgnm.stage"  # a Stage value, or search / trial / fewshot / fewshot-pair
    BASELINE = "pgnm.baseline"
    RUN_ID = "pgnm.run_id"
    DATA_PLAN_HASH = "pgnm.data.plan_hash"
    DATA_SAMPLES = "pgnm.data.samples"
    DATA_SHARDS = "pgnm.data.shards"
    SOURCE_MODEL_URI = "pgnm.source_model_uri"
    SOURCE_MODEL_ID = "pgnm.source_model_id"
    SOURCE_MODEL_NAME = "pgnm.source_model_name"
    SOURCE_MODEL_VERSION = "pgnm.source_model_version"
    SOURCE_RUN_ID = "pgnm.source_run_id"
    ARCH = "pgnm.arch"
    OBJECTIVE = "pgnm.objective"
    MASK = "pgnm.mask"  # a heated model's own mask settings
    SOURCE_MASK = "pgnm.source_mask"  # a fine-tuned model's: those its source was trained with
    MODEL_ID = "pgnm.model_id"  # the run's LoggedModel, created at its start (a resume finds it)
    TRACKING = "pgnm.tracking"
    FEWSHOT_INIT = "pgnm.fewshot.init"
    FEWSHOT_DATASET = "pgnm.fewshot.dataset"
    TUNE_TRIAL_ID = "pgnm.tune.trial_id"
    TUNE_SEARCH_RUN_ID = "pgnm.tune.search_run_id"
    TUNE_STOPPED_EARLY = "pgnm.tune.stopped_early"
    TUNE_SCORE = "pgnm.tune.score"
    TUNE_RETRIED = "pgnm.tune.retried"
    TUNE_METRIC = "pgnm.tune.metric"
    TUNE_BEST_TRIAL = "pgnm.tune.best_trial"
    TUNE_BEST_MODEL_URI = "pgnm.tune.best_model_uri"
    TUNE_EXPERIMENT = "pgnm.tune.experiment"  # a continued search finds its run again by it
    PARENT_RUN = "mlflow.parentRunId"  # MLflow's own nesting tag
