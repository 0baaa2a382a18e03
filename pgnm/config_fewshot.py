"""The few-shot protocol's sections of the config tree (``launch/fewshot.py``; the other
entry points ignore them), and the strict base every section of :mod:`pgnm.config` shares."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Section(BaseModel):
    # strict: no silent "1" -> 1 or true -> 1 coercion; frozen: one object flows everywhere.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)


_INIT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class StageSpec(Section):
    """One training run of an initialisation's recipe (``pgnm.protocol``)."""

    stage: Literal["pretrain", "finetune"]
    config: str | None = None  # YAML file (configs/pretrain/..., configs/finetune/...)
    overrides: dict[str, Any] = Field(default_factory=dict)  # dotted key -> value


class InitSpec(Section):
    """Where a few-shot initialisation's weights come from.

    ``model``: null = random; a model.pt / timm file; a ``models:/`` or ``runs:/`` URI; or
    ``init:<name>``, another initialisation's final model. ``train``: stages trained in order
    starting from ``model``; the last one's model is the initialisation.
    """

    model: str | None = None
    train: list[StageSpec] = Field(default_factory=list)


class ControlsConfig(Section):
    """Baselines the official comparison lacks (pgnm/method/README.md, 'The two objectives')."""

    equal_budget: bool = True  # the baseline also gets the reference's stage-2 fine-tune
    effective_lr: bool = True  # the baseline at lr x S, the paper objective's implicit factor
    # the reference's recipe with its policy frozen at the start (policy.learn=false): the same
    # masks' distribution and objective without the policy gradient
    random_mask: bool = True
    baseline: str = "baseline"  # the init whose training recipe the controls change
    reference: str = "heated-paper"  # the PGNM init they are matched to
    # S: log_grid = log G^2 from the reference's stage-1 mask.grid; measured = the mean
    # train/policy_term (S) of the reference's stage-1 run; or a number.
    lr_factor: float | Literal["log_grid", "measured"] = "log_grid"
    # The equal-budget control's extra stage; null = the reference's last (finetune) stage.
    stage2: StageSpec | None = None


class FewShotConfig(Section):
    """The few-shot protocol (``launch/fewshot.py``); ignored by the other entry points.

    The rest of the config is the few-shot fine-tune recipe (policy off, ``model.init`` set
    per initialisation, ``data.root`` per subset).
    """

    sizes: list[int] = Field(default_factory=lambda: [8, 16, 32, 64, 128, 256])
    trials: int = Field(10, ge=1)  # sample draws per size (seeds fewshot.seed + trial)
    seed: int = 0
    # name -> MedMNIST-format .npz, folder-per-class directory (<split>/<class>/img) or shards
    datasets: dict[str, str] = Field(default_factory=dict)
    # A folder set with train/ and test/ but no val/: this share of each class's training
    # samples becomes its val split, drawn with fewshot.seed (recorded in the report)
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    inits: dict[str, InitSpec] = Field(default_factory=dict)
    controls: ControlsConfig = ControlsConfig()
    min_steps: int = Field(0, ge=0)  # each fine-tune trains at least this many steps
    # best_val: every fine-tune runs up to schedule.epochs (at least min_steps), is evaluated
    # on the val split after each epoch, stops after `patience` epochs without a better
    # `select_on` value, and is tested with its best epoch's weights. A fixed budget suits
    # one initialisation at most: a random init needs many more steps than a pretrained one,
    # and every init more as k grows. last: the final epoch's weights, whatever the val split.
    selection: Literal["best_val", "last"] = "best_val"
    patience: int = Field(3, ge=1)
    select_on: Literal["loss", "f1_macro", "balanced_accuracy"] = "loss"  # of the val split
    # Learning rates tried for every draw; the draw keeps the one whose best epoch has the
    # best val `select_on` (the test split plays no part). One lr suits one initialisation at
    # most: a model pretrained at lr x S takes a larger step than the baseline. Empty: optim.lr.
    lrs: list[float] = Field(default_factory=list)
    # Besides fine-tuning: a logistic regression (sklearn) on each init's frozen features and
    # on raw pixels (grey, pixel_size px a side) of the same draws: what "learnable" means.
    probe: bool = True
    pixel_size: int = Field(32, ge=4)
    keep_runs: bool = False  # keep each fine-tune's directory (model, metrics, curves)
    # Fine-tunes run this many at a time, each in its own process with an equal share of the
    # CPU cores, or one GPU each on a GPU machine (pgnm.protocol.workers). 1: in this process.
    workers: int = Field(1, ge=1)

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        if not sizes or any(k < 1 for k in sizes) or len(set(sizes)) != len(sizes):
            raise ValueError("must be distinct positive sample counts")
        return sorted(sizes)

    @field_validator("lrs")
    @classmethod
    def _lrs(cls, lrs: list[float]) -> list[float]:
        if any(not lr > 0 for lr in lrs) or len(set(lrs)) != len(lrs):
            raise ValueError("must be distinct positive learning rates")
        return sorted(lrs)

    @field_validator("datasets", "inits")
    @classmethod
    def _names(cls, entries: dict[str, Any]) -> dict[str, Any]:
        bad = [n for n in entries if not re.match(_INIT_NAME, n)]
        if bad:
            raise ValueError(f"names must match {_INIT_NAME} (got {bad})")
        return entries


__all__ = ["ControlsConfig", "FewShotConfig", "InitSpec", "StageSpec", "Section"]
