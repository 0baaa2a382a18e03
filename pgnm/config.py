"""The one typed configuration tree of pgnm.

Every entry point builds a :class:`Config` the same way: embedded defaults, then a YAML file,
then dotted ``key=value`` overrides from the command line (``optim.lr=0.05 mask.grid=32``).
Validation is strict: an unknown key or a value of the wrong type fails with a
:class:`ConfigError` that names the key and, where there is one, the file. The validated object
is what the trainer reads and what is logged to MLflow (``flatten``).

The defaults are the official code's recipe (pgnm/method/README.md); where pgnm departs from it the
field's comment says so and names the setting that restores the official behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from pgnm._yaml import ConfigError, parse_value, read_yaml
from pgnm.config_fewshot import FewShotConfig, Section
from pgnm.config_files import resolve_config


class ModelConfig(Section):
    arch: str = "resnet18"  # any timm architecture name
    num_classes: int | None = Field(None, ge=1)  # null: as many as the data's classes.json
    # Where the weights start: null = random (the baseline), a heated model or timm
    # checkpoint file (.pt/.pth/.safetensors), a models:/ or runs:/ URI, or timm's pretrained
    # weights, timm:<name> (e.g. timm:resnet50.a1_in1k, ImageNet; fetched from the hub) or
    # timm:<name>@<file> (offline); a class-count mismatch re-initialises the head.
    init: str | None = None
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0)
    channels_last: bool = False


class PolicyConfig(Section):
    enabled: bool = True  # false trains the classifier alone: the baseline
    # false: the random-mask control. The policy stays at its initial weights and running
    # state (in eval mode, so not even its BatchNorm statistics move): the classifier trains on
    # masks from the distribution a heated run starts with, through the same objective, so
    # only the policy's learning differs from the heated run.
    learn: bool = True
    trunk: str = "resnet10t"
    hidden_dim: int = Field(512, ge=1)
    mixing_decay: float = Field(0.9, ge=0.0, le=1.0)  # logits: d * running state + (1-d) * head
    state_momentum: float = Field(0.99, ge=0.0, le=1.0)  # EMA of the batch-mean head output
    # Light policy (departure, off by default): the policy sees the image resized to this many
    # pixels per side instead of the full crop. null = full resolution, as the official code.
    input_size: int | None = Field(None, ge=16)
    # Numerical guards (departure): clamp Beta logits to [-c, c] and samples to [eps, 1 - eps]
    # so log-probs stay finite. null / 0.0 reproduce the official unguarded sampler.
    logit_clamp: float | None = Field(8.0, gt=0.0)
    sample_eps: float = Field(1e-6, ge=0.0, lt=0.5)
    check_finite: bool = True  # stop, naming the step, on a non-finite logit or log-prob
    # 1 (departure): each head runs once per step. 2: the official second pass for the running
    # state (same values and gradients; the heads' BatchNorm statistics move twice per step).
    head_passes: Literal[1, 2] = 1
    # true (departure): the running state is averaged over ranks after every step. false: as
    # the official code under DDP, each rank keeps and updates its own (they drift apart).
    share_running_state: bool = True
    # gamma: a log-space Gamma ratio, the same distribution drawn faster and without host
    # syncs (pgnm/kernels/gamma.py). torch: torch.distributions.Beta, the official stream.
    sampler: Literal["torch", "gamma"] = "gamma"


class MaskConfig(Section):
    grid: int = Field(64, ge=1)  # G: one Beta sample per cell of a G x G grid
    kernel_size: int = Field(13, ge=1)
    sigma: float = Field(6.0, gt=0.0)
    # auto: the Triton kernel for CUDA tensors when triton is installed, else the exact fused
    # CPU path; reference: the official four-op chain. All agree to float rounding (pgnm/kernels).
    kernel: Literal["reference", "fused", "triton", "auto"] = "auto"

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, size: int) -> int:
        if size % 2 == 0:
            raise ValueError("must be odd (the blur is centred on each pixel)")
        return size


class ObjectiveConfig(Section):
    # paper: the official loss CE_mean * mean_b logsumexp_c log p. reinforce: textbook REINFORCE.
    name: Literal["paper", "reinforce"] = "paper"
    # The official code computes log(sum(exp(log p))), which overflows to inf for sharp Betas;
    # true uses logsumexp (same value wherever the official one is finite).
    stable_logsumexp: bool = True
    baseline_momentum: float = Field(0.9, ge=0.0, lt=1.0)  # reinforce: moving-average baseline
    policy_weight: float = Field(1.0, ge=0.0)  # reinforce: weight of the policy-gradient term


class OptimConfig(Section):
    lr: float = Field(0.1, gt=0.0)  # classifier learning rate (global batch 256 in the paper)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    nesterov: bool = False
    policy_lr_ratio: float = Field(0.1, gt=0.0)  # policy lr = lr * ratio (official: lr / 10)
    grad_clip: float | None = Field(None, gt=0.0)
    grad_accum_steps: int = Field(1, ge=1)


class ScheduleConfig(Section):
    epochs: int = Field(90, ge=1)
    classifier: Literal["step", "cosine", "constant"] = "step"
    policy: Literal["step", "cosine", "constant"] = "cosine"
    step_size: int = Field(30, ge=1)
    gamma: float = Field(0.1, gt=0.0)
    min_lr: float = Field(0.0, ge=0.0)
    warmup_epochs: int = Field(0, ge=0)
    warmup_start_factor: float = Field(0.01, gt=0.0, le=1.0)
    max_steps: int | None = Field(None, ge=1)  # stop early after this many optimizer steps


class DataConfig(Section):
    root: str | None = None  # shard directory, as pgnm.data writes it (data_tools converts)
    # auto: DALI where it is installed, else the webdataset loader (same batches, same spec)
    loader: Literal["auto", "dali", "webdataset"] = "auto"
    # Per epoch, shards are permuted across ranks, then samples shuffled in a rank's range
    # (pgnm/data/order.py): webdataset over shuffle_window sample numbers (0: all of them),
    # DALI in a buffer of shuffle_buffer encoded images
    shuffle_window: int = Field(0, ge=0)
    shuffle_buffer: int = Field(512, ge=1)
    # error: stop naming the shard and key; skip: drop the sample, count it, keep going
    # (webdataset loader only: DALI cannot skip an undecodable sample)
    on_bad_sample: Literal["error", "skip"] = "error"
    max_skipped: float = Field(0.01, ge=0.0, le=1.0)  # skip: stop past this fraction per epoch
    check_md5: bool = False  # also check each shard's md5 before reading (one more read)
    batch_size: int = Field(32, ge=1)  # per rank
    image_size: int = Field(224, ge=8)  # training crop; also the mask's output size
    eval_resize: int = Field(256, ge=8)
    # 16-bit data sets only: (low, high) in the data's units (HU for CT) mapped to 0..1 and
    # clipped; unset: 0..65535 maps to 0..1. Not strict: YAML gives a list
    window: tuple[float, float] | None = Field(None, strict=False)
    mean: float = 0.3162  # RadImageNet grey-level statistics, replicated over 3 channels
    std: float = Field(0.3213, gt=0.0)
    num_workers: int = Field(2, ge=0)
    # With workers, the training process's fixed glibc mmap threshold (pgnm/data/heap.py):
    # without one, glibc's adaptive threshold lets its heap keep each freed batch. null: glibc's
    # default. glibc's own MALLOC_MMAP_THRESHOLD_, when set, wins.
    heap_mmap_threshold_kib: int | None = Field(128, ge=1, le=32768)
    synthetic_images: int = Field(2048, ge=1)


class EngineConfig(Section):
    # auto: DS_ACCELERATOR when set, else CUDA where visible, else the CPU (pgnm/train/cluster.py)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # true: bit-reproducible GPU runs (deterministic kernels only, no cuDNN autotuning), at
    # some cost in speed; false: cuDNN picks the fastest kernels, as the official code does.
    deterministic: bool = False
    zero_stage: int = Field(0, ge=0, le=2)
    precision: Literal["fp32", "bf16"] = "fp32"
    deepspeed_config: str | None = None  # a JSON file whose entries override the generated ones
    resume: str = "auto"  # auto | never | path to a checkpoint directory
    checkpoint_every: int = Field(0, ge=0)  # steps between mid-epoch checkpoints; 0 = per epoch
    checkpoint_keep: int = Field(2, ge=1)  # complete checkpoints kept; older ones are deleted
    checkpoints: bool = True  # false: none at all, for runs cheaper to redo than to resume
    # true: sample order, noise, running statistics and the gradient sum's order follow the
    # global batch, so a checkpoint resumes at another world size, bit for bit when ranks and
    # accumulation are powers of two (ZeRO 0, webdataset loader); false: per-rank streams.
    elastic: bool = False
    # Node-local space (temporary files, kernel caches); null = the node's TMPDIR. Checkpoints
    # go to run_dir, which every node of a multi-node run must mount at the same path.
    scratch_dir: str | None = None


class TrackingConfig(Section):
    enabled: bool = True
    uri: str | None = None  # null = sqlite store under run_dir (or $MLFLOW_TRACKING_URI)
    experiment: str = "pgnm"
    registered_model: str | None = None  # null = pgnm-heated-<arch>
    alias: str = "current"  # MLflow reserves "latest" (models:/<name>/latest is built in)
    log_every: int = Field(50, ge=1)
    # Nests this run under another (a search's trial run); lineage tools follow the tag.
    parent_run_id: str | None = None
    # false: keep model.pt on disk but do not export, log and register the model in MLflow
    # (the few-shot protocol's hundreds of fine-tunes each would otherwise add one).
    log_model: bool = True


class TuneConfig(Section):
    """A Ray Tune search over this config (``launch/tune.py``); ignored by the other entry points.

    Each trial trains stage 1 and then fine-tunes for ``finetune_epochs`` with
    ``finetune_overrides`` applied; ASHA compares trials epoch by epoch (see ``pgnm/tune``).
    """

    num_samples: int = Field(4, ge=1)  # trials (times each grid_search combination)
    scheduler: Literal["asha", "fifo", "median"] = "asha"
    searcher: Literal["random", "optuna"] = "random"  # random also expands grid_search
    metric: str = "finetune/val_macro_f1"
    mode: Literal["min", "max"] = "max"
    grace_period: int = Field(1, ge=1)  # ASHA: epochs every trial gets before it can be stopped
    reduction_factor: float = Field(2.0, gt=1.0)  # ASHA: keep 1/reduction_factor at each rung
    max_concurrent: int = Field(2, ge=1)
    max_failures: int = Field(1, ge=0)  # retries of a crashed trial, from its last checkpoint
    workers_per_trial: int = Field(1, ge=1)  # 1: in-process; more: Ray Train TorchTrainer ranks
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(0.0, ge=0.0)
    finetune_epochs: int = Field(1, ge=0)  # 0: score the heated classifier without stage 2
    finetune_overrides: dict[str, Any] = Field(default_factory=dict)  # dotted key -> value
    address: str | None = None  # null = start a local Ray; "auto" joins a running cluster
    num_cpus: int | None = Field(None, ge=1)  # local Ray only; null = all cores
    dashboard: bool = False
    # Where Tune keeps experiment state and trial checkpoints (<storage>/<name>): on a cluster,
    # trials write checkpoints from whichever node runs them, so every node must reach it (a
    # shared path or a pyarrow/fsspec URI such as s3://bucket/x). null = <run_dir>/<name>/tune.
    storage: str | None = None
    # auto: the same command after a crash continues the search, finished trials kept.
    resume: Literal["auto", "never"] = "auto"
    search_space: dict[str, Any] = Field(default_factory=dict)  # dotted key -> Tune domain spec


class Config(Section):
    name: str = "pgnm"
    seed: int = 0
    run_dir: str = "runs"
    model: ModelConfig = ModelConfig()
    policy: PolicyConfig = PolicyConfig()
    mask: MaskConfig = MaskConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    data: DataConfig = DataConfig()
    engine: EngineConfig = EngineConfig()
    tracking: TrackingConfig = TrackingConfig()
    tune: TuneConfig = TuneConfig()
    fewshot: FewShotConfig = FewShotConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.data.on_bad_sample == "skip" and self.data.loader == "dali":
            raise ValueError("data.on_bad_sample=skip needs data.loader=webdataset or auto")
        if self.engine.checkpoint_every and not self.engine.checkpoints:
            raise ValueError("engine.checkpoint_every needs engine.checkpoints=true")
        if self.engine.precision == "bf16" and self.engine.zero_stage == 0:
            # DeepSpeed 0.19.8 runs bf16 with ZeRO 0 without an fp32 copy of the weights: SGD
            # would update bf16 weights directly, losing small updates to rounding.
            raise ValueError("engine.precision=bf16 needs engine.zero_stage >= 1 (fp32 master "
                             "weights); with ZeRO 0 DeepSpeed updates the bf16 weights directly")
        pad = self.mask.kernel_size // 2
        if pad >= self.data.image_size:  # reflect padding needs pad < image side
            raise ValueError(
                f"mask.kernel_size={self.mask.kernel_size} needs data.image_size > {pad}"
            )
        return self


# ----------------------------------------------------------------------------- building


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"override {key!r}: empty component in the key")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"override {key!r}: {prefix} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _validate(tree: Mapping[str, Any], source: str) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        lines = []
        for problem in err.errors():
            key = ".".join(str(part) for part in problem["loc"]) or "<root>"
            shown = "" if problem["type"] == "missing" else f" (got {problem['input']!r})"
            lines.append(f"  {key}: {problem['msg']}{shown}")
        raise ConfigError(f"invalid configuration from {source}:\n" + "\n".join(lines)) from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["optim.lr=0.05", "mask.grid=32"]`` -> ``{"optim.lr": 0.05, "mask.grid": 32}``."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        parsed[key.strip()] = parse_value(text)
    return parsed


def with_overrides(
    config: Config, overrides: Mapping[str, Any], source: str = "overrides"
) -> Config:
    """A new config: ``config`` with dotted-key ``overrides`` applied and validated again."""
    tree = config.model_dump()
    for key, value in overrides.items():
        _set_dotted(tree, key, value)
    return _validate(tree, source)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then ``key=value`` overrides.

    ``path`` is a file, or the name of a shipped config (``pretrain/smoke``, see
    :mod:`pgnm.config_files`) where no such file exists."""
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = resolve_config(path)
        tree = read_yaml(path)
        source = str(path)
    for key, value in parse_overrides(overrides).items():
        _set_dotted(tree, key, value)
    if overrides:
        source += " + command-line overrides"
    return _validate(tree, source)


def flatten(config: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of the config, e.g. for MLflow params: ``{"optim.lr": 0.1, ...}``."""
    flat: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            flat.update(flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def dump_config(config: Config) -> str:
    """YAML text that :func:`load_config` reads back to an equal config."""
    return yaml.safe_dump(config.model_dump(), sort_keys=False)


def config_from_argv(argv: Sequence[str] | None = None, description: str = "",
                     prog: str | None = None) -> Config:
    """The command line every entry point shares.

    ``[--config FILE|NAME] [key=value ...]``; ``--local_rank`` (passed by the deepspeed
    launcher) is accepted and ignored, since ranks are read from the environment;
    ``--print-config`` prints the resolved YAML and exits. ``prog``: the name in the usage line
    (``pgnm pretrain``; by default the script's).
    """
    import argparse

    from pgnm.config_help import config_keys_help

    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     epilog=config_keys_help(Config()),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, metavar="FILE|NAME",
                        help="YAML file, or a shipped config's name such as pretrain/smoke; "
                             "keys not given keep defaults")
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--print-config", action="store_true", help="print the config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. optim.lr=0.05")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    if args.print_config:
        print(dump_config(config), end="")
        parser.exit(0)
    return config
