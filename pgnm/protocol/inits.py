"""Initialisations of the few-shot protocol: given models, trained recipes, and the controls.

Each ``fewshot.inits.<name>`` is a model (file, ``models:/`` / ``runs:/`` URI, or
``init:<other>``), optionally followed by stages trained in order through ``pgnm.train.fit``.
The two controls are derived from the baseline's recipe when switched on and not given by hand:

* ``<baseline>-equal-budget``: the baseline's model fine-tuned with the reference's last stage
  (its stage 2), so it gets stage-1 + stage-2 epochs like the heated model;
* ``<baseline>-effective-lr``: the baseline's recipe at ``optim.lr`` x S, the factor the paper
  objective implicitly applies to the classifier (see the method card): ``log_grid`` takes
  S = log G² from the reference's stage-1 ``mask.grid``, ``measured`` the mean S
  (``train/policy_term``) its stage-1 run logged, or a number;
* ``random-mask``: the reference's recipe with ``policy.learn=false`` in its stage 1, so the
  classifier sees masks from the policy's initial distribution through the same objective:
  heated - random-mask is what the policy gradient adds, random-mask - baseline what noise
  masks alone add.

A trained stage is reused when its ``summary.json`` exists and its config is unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from pgnm.atomic import atomic_write
from pgnm.config import Config, ConfigError, dump_config, flatten, load_config, with_overrides
from pgnm.config_fewshot import FewShotConfig, InitSpec, StageSpec
from pgnm.models import TIMM_PREFIX
from pgnm.names import Metric, Stage, Tag
from pgnm.train.result import FitResult

INIT_PREFIX = "init:"
RANDOM_MASK = "random-mask"
STAMP = "protocol-stage.yaml"


@dataclass
class Resolved:
    """What the few-shot fine-tunes load, and where it came from."""

    name: str
    model: str | None  # local model file; None = random weights
    uri: str | None = None  # what lineage should name: registry URI, run artifact or file
    tags: dict[str, str] = field(default_factory=dict)
    stages: list[FitResult] = field(default_factory=list)  # stage runs trained or reused
    note: str = ""


def trained_config_changes(stamp: Path, config: Config) -> str:
    """The keys whose values differ between the config a stage was trained with (its stamp)
    and ``config``; empty when none. The stamp is read as a config file is, so a key that
    pgnm added after the stage was trained counts at its default, which keeps the behaviour
    from before it existed: an upgrade does not invalidate finished stages."""
    try:
        trained = flatten(load_config(stamp))
    except ConfigError as err:  # a key pgnm no longer has, or a value it no longer accepts
        return str(err).splitlines()[-1].strip()
    now = flatten(config)
    keys = sorted(k for k in trained.keys() | now.keys() if trained.get(k) != now.get(k))
    return ", ".join(f"{k}: {trained.get(k)!r} then, {now.get(k)!r} now" for k in keys)


def stage_config(spec: StageSpec, where: str) -> Config:
    """The stage's own config: its YAML file (or defaults), then its overrides."""
    base = load_config(spec.config) if spec.config else load_config()
    return with_overrides(base, spec.overrides, f"{where}.overrides")


def lr_factor(fs: FewShotConfig, reference: InitSpec, measured: float | None) -> tuple[float, str]:
    """S for the effective-LR control, and a sentence saying where it came from."""
    where = f"fewshot.inits.{fs.controls.reference}"
    if isinstance(fs.controls.lr_factor, float):
        return fs.controls.lr_factor, "S given in fewshot.controls.lr_factor"
    pretrain = [s for s in reference.train if s.stage == Stage.PRETRAIN]
    if not pretrain:
        raise ConfigError(f"fewshot.controls.lr_factor={fs.controls.lr_factor} needs a pretrain "
                          f"stage in {where}.train (or give a number)")
    if fs.controls.lr_factor == "measured":
        if measured is None:
            raise ConfigError(f"{where}: its stage-1 run logged no train/policy_term")
        return measured, "S measured: mean train/policy_term of the reference's stage-1 run"
    grid = stage_config(pretrain[0], f"{where}.train[0]").mask.grid
    return math.log(grid * grid), f"S = log G^2 = log {grid}^2 (analytical)"


def with_controls(fs: FewShotConfig, measured_s: float | None = None) -> tuple[dict, dict]:
    """All initialisations, the derived controls added; and a note per control."""
    inits, notes = dict(fs.inits), {}
    c = fs.controls
    equal, effective = f"{c.baseline}-equal-budget", f"{c.baseline}-effective-lr"
    need_equal = c.equal_budget and equal not in inits
    need_effective = c.effective_lr and effective not in inits
    need_random = c.random_mask and RANDOM_MASK not in inits
    if not (need_equal or need_effective or need_random):
        return inits, notes
    if c.baseline not in inits:
        raise ConfigError(f"fewshot.controls.baseline: no initialisation fewshot.inits."
                          f"{c.baseline} (switch the controls off or name the baseline)")
    baseline = inits[c.baseline]
    reference = inits.get(c.reference, InitSpec())
    if need_equal:
        stage2 = c.stage2 or (reference.train[-1] if reference.train else None)
        if stage2 is None or stage2.stage != Stage.FINETUNE:
            raise ConfigError(
                f"fewshot.controls.equal_budget: set fewshot.controls.stage2, or give "
                f"fewshot.inits.{c.reference} a train recipe ending with its finetune stage, "
                f"or an init named {equal}")
        inits[equal] = InitSpec(model=f"{INIT_PREFIX}{c.baseline}", train=[stage2])
        notes[equal] = f"{c.baseline} + the stage 2 of {c.reference}"
    if need_effective:
        if not baseline.train:
            raise ConfigError(f"fewshot.controls.effective_lr: fewshot.inits.{c.baseline} needs "
                              f"a train recipe (or give an init named {effective})")
        s, how = lr_factor(fs, reference, measured_s)
        stages = []
        for i, spec in enumerate(baseline.train):
            lr = stage_config(spec, f"fewshot.inits.{c.baseline}.train[{i}]").optim.lr
            stages.append(spec.model_copy(
                update={"overrides": {**spec.overrides, "optim.lr": lr * s}}))
        inits[effective] = InitSpec(model=baseline.model, train=stages)
        notes[effective] = f"{c.baseline} at lr x {s:.3f}; {how}"
    if need_random:
        inits[RANDOM_MASK], notes[RANDOM_MASK] = random_mask(fs)
    return inits, notes


def random_mask(fs: FewShotConfig) -> tuple[InitSpec, str]:
    """The reference's recipe, its stage-1 policy frozen at its initial state."""
    reference = fs.inits.get(fs.controls.reference)
    if reference is None or not any(s.stage == Stage.PRETRAIN for s in reference.train):
        raise ConfigError(
            f"fewshot.controls.random_mask: fewshot.inits.{fs.controls.reference} needs a train "
            f"recipe with a pretrain stage (or switch the control off, or give an init named "
            f"{RANDOM_MASK})")
    stages = [spec.model_copy(update={"overrides": {**spec.overrides, "policy.learn": False}})
              if spec.stage == Stage.PRETRAIN else spec for spec in reference.train]
    return (InitSpec(model=reference.model, train=stages),
            f"{fs.controls.reference} with its policy frozen at the start (policy.learn=false)")


def measured_s(results: list[FitResult]) -> float | None:
    """Mean S over the epochs of the first stage-1 run (``train/policy_term`` per epoch)."""
    for result in results:
        if result.stage != Stage.PRETRAIN:
            continue
        log = result.out_dir / "metrics.jsonl"
        term = Metric.TRAIN_POLICY_TERM
        values = [r[term] for r in map(json.loads, log.read_text().splitlines())
                  if r.get("kind") == "epoch" and term in r]
        return sum(values) / len(values) if values else None
    return None


def _lineage(result: FitResult) -> tuple[str, dict[str, str]]:
    registered = result.registered
    uri = registered.model_uri if registered else str(result.model)
    tags = {Tag.SOURCE_MODEL_URI: uri, Tag.SOURCE_RUN_ID: result.mlflow_run_id or ""}
    if registered:
        tags.update({Tag.SOURCE_MODEL_NAME: registered.registered_model,
                     Tag.SOURCE_MODEL_VERSION: str(registered.version),
                     Tag.SOURCE_MODEL_ID: registered.model_id or ""})
    return uri, {k: v for k, v in tags.items() if v}


class InitResolver:
    """Resolves (training where needed) initialisations by name, each once."""

    def __init__(self, inits: dict[str, InitSpec], store: str, train_dir: Path, fit) -> None:  # noqa: ANN001
        self.inits, self.store, self.train_dir, self.fit = inits, store, train_dir, fit
        self.done: dict[str, Resolved] = {}
        self._active: list[str] = []

    def __call__(self, name: str) -> Resolved:
        if name in self.done:
            return self.done[name]
        if name not in self.inits:
            raise ConfigError(f"{INIT_PREFIX}{name}: no initialisation fewshot.inits.{name}")
        if name in self._active:
            raise ConfigError(f"fewshot.inits: init: references loop: {' -> '.join(self._active)}")
        self._active.append(name)
        spec = self.inits[name]
        current = self._start(spec.model)
        current.name, current.stages = name, list(current.stages)
        for i, stage in enumerate(spec.train):
            result = self._train(name, i, stage, current)
            current.stages.append(result)
            current.model = str(result.model)
            current.uri, current.tags = _lineage(result)
        self._active.pop()
        self.done[name] = current
        return current

    def _start(self, model: str | None) -> Resolved:
        if model is None:
            return Resolved("", None)
        if model.startswith(INIT_PREFIX):
            other = self(model[len(INIT_PREFIX):])
            return Resolved("", other.model, other.uri, dict(other.tags), list(other.stages))
        if model.startswith(TIMM_PREFIX):  # timm fetches (or reads) it in each fine-tune
            return Resolved("", model, model, {Tag.SOURCE_MODEL_URI: model})
        if model.startswith(("models:/", "runs:/")):
            from pgnm.tracking import resolve_init

            # downloaded once, loaded by every fine-tune
            local, tags = resolve_init(model, self.store, self.train_dir / "downloads")
            return Resolved("", str(local), model, tags)
        if not Path(model).is_file():
            raise ConfigError(f"fewshot.inits: model file not found: {model}")
        return Resolved("", model, model, {Tag.SOURCE_MODEL_URI: model})

    def _train(self, name: str, i: int, spec: StageSpec, start: Resolved) -> FitResult:
        where = f"fewshot.inits.{name}.train[{i}]"
        config = stage_config(spec, where)
        updates = {"name": f"{name}-{i}-{spec.stage}", "run_dir": str(self.train_dir),
                   "model.init": start.uri if start.model else None}
        if config.tracking.uri is None:  # one store for the protocol and what it trains
            updates["tracking.uri"] = self.store
        if config.tracking.registered_model is None:  # one registry name per recipe and stage
            updates["tracking.registered_model"] = f"pgnm-{name}-{spec.stage}-{config.model.arch}"
        config = with_overrides(config, updates, where)
        out = self.train_dir / config.name
        stamp = out / STAMP  # written once the stage finished: the config it was trained with
        if stamp.is_file():
            changed = trained_config_changes(stamp, config)
            if changed:
                raise ConfigError(f"{where}: {out} was trained with another config ({changed}); "
                                  "remove it or rename the initialisation")
            print(f"{config.name}: trained already, reusing {out}")
            return FitResult.read(out)
        result = self.fit(config, Stage(spec.stage))
        atomic_write(stamp, dump_config(config))
        return result
