"""One DeepSpeed engine over the joint module, with a parameter group per network.

The official loss runs through the policy and the classifier in one backward pass; DeepSpeed
cannot split one backward across two engines, so both networks live in one module and one
engine, as two parameter groups of one SGD optimizer. Learning rates are set per group at
each epoch from ``schedules`` (no DeepSpeed scheduler).

The DeepSpeed config is generated from the typed config, and it states every DeepSpeed
setting that changes an update, whatever DeepSpeed's default is: DeepSpeed 0.19.8 clips
gradients at 1.0 unless told otherwise, reduces bf16 gradients in bf16, and under bf16 with
ZeRO 0 keeps no fp32 master weights. ``engine.deepspeed_config`` may name a JSON file merged
(deeply) over the generated config for settings pgnm does not model (bucket sizes, overlap);
a key pgnm does model must agree with the typed config, or the run is refused naming it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pgnm.config import Config
from pgnm.errors import ConfigError
from pgnm.train.schedules import learning_rate


def deepspeed_config(config: Config, world_size: int) -> dict:
    """The DeepSpeed config for ``config``: generated, then ``engine.deepspeed_config`` merged."""
    micro, accum = config.data.batch_size, config.optim.grad_accum_steps
    bf16 = config.engine.precision == "bf16"
    generated: dict = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "train_batch_size": micro * accum * world_size,
        "zero_optimization": {"stage": config.engine.zero_stage},
        # Written always: DeepSpeed's default is 1.0, which clips every run (0.0 = off).
        "gradient_clipping": config.optim.grad_clip or 0.0,
        "fp16": {"enabled": False},  # fp16 would add dynamic loss scaling, which we never want
        "bf16": {
            "enabled": bf16,
            # fp32 master weights and gradients (ZeRO >= 1 keeps an fp32 copy; pgnm refuses
            # bf16 with ZeRO 0, where DeepSpeed would run SGD on the bf16 weights themselves)
            "bf16_master_weights_and_grads": False,
            "bf16_optimizer_states": False,
            # accumulate each micro-batch's gradient into fp32 at once, not in bf16 first
            "immediate_grad_update": True,
            # a step with inf/NaN gradients is applied, not silently skipped: the next loss
            # is then non-finite and the run stops naming the step (loop.py)
            "check_grad_overflow": False,
        },
        # Gradients are summed across ranks in fp32 and averaged after the sum, as DDP does;
        # DeepSpeed's default communication dtype is the model's (bf16 under bf16).
        "communication_data_type": "fp32",
        "data_types": {"grad_accum_dtype": "fp32"},
        "prescale_gradients": False,
        "gradient_predivide_factor": 1.0,
        "gradient_allreduce_op": "mean",
        "steps_per_print": 10**9,  # progress is ours to report
        "wall_clock_breakdown": False,
        # ZeRO refuses optimisers it has not been tested with unless told; SGD is fine.
        "zero_allow_untested_optimizer": True,
    }
    if config.engine.deepspeed_config:
        path = Path(config.engine.deepspeed_config)
        try:
            overrides = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"engine.deepspeed_config: cannot read {path}: {err}") from None
        if not isinstance(overrides, dict):
            raise ConfigError(f"engine.deepspeed_config: {path} must hold a JSON object")
        _refuse_disagreements(overrides, generated, path)
        generated = _deep_merge(generated, overrides)
    return generated


# DeepSpeed keys that the typed config owns: a JSON override may repeat them, not change them.
_MODELLED = {
    "train_micro_batch_size_per_gpu": "data.batch_size",
    "gradient_accumulation_steps": "optim.grad_accum_steps",
    "train_batch_size": "data.batch_size x optim.grad_accum_steps x ranks",
    "zero_optimization.stage": "engine.zero_stage",
    "bf16.enabled": "engine.precision",
    "fp16.enabled": "engine.precision (fp16 is not supported)",
    "gradient_clipping": "optim.grad_clip",
}


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _refuse_disagreements(overrides: dict, generated: dict, path: Path) -> None:
    ours = dict(_leaves(generated))
    for key, value in _leaves(overrides):
        if key in _MODELLED and value != ours[key]:
            raise ConfigError(
                f"engine.deepspeed_config: {path} sets {key}={value!r}, but pgnm sets it to "
                f"{ours[key]!r} from {_MODELLED[key]}; change that setting instead"
            )


def _deep_merge(base: dict, overrides: Mapping[str, Any]) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def param_groups(model: nn.Module, config: Config) -> list[dict]:
    """SGD groups named ``classifier`` and ``policy`` (lr = lr x policy_lr_ratio)."""
    groups = []
    for name, params in model.param_groups().items():  # type: ignore[operator]
        ratio = config.optim.policy_lr_ratio if name == "policy" else 1.0
        groups.append({"name": name, "params": params, "base_lr": config.optim.lr * ratio})
    return groups


def set_epoch_learning_rates(optimizer: torch.optim.Optimizer, config: Config, epoch: int) -> dict:
    """Apply this epoch's rate to every group; returns {group name: lr} for logging."""
    rates = {}
    for group in optimizer.param_groups:
        kind = config.schedule.policy if group["name"] == "policy" else config.schedule.classifier
        group["lr"] = learning_rate(group["base_lr"], kind, epoch, config.schedule)
        rates[group["name"]] = group["lr"]
    return rates


def build_engine(model: nn.Module, config: Config, world_size: int):  # noqa: ANN201
    """(engine, optimizer): the DeepSpeed engine over ``model`` and its SGD optimiser."""
    import deepspeed

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    optimizer = torch.optim.SGD(
        param_groups(model, config),
        lr=config.optim.lr,
        momentum=config.optim.momentum,
        weight_decay=config.optim.weight_decay,
        nesterov=config.optim.nesterov,
    )
    engine, optimizer, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=deepspeed_config(config, world_size)
    )
    if world_size == 1 and config.engine.zero_stage == 0:
        # Nothing to average in a world of one, but DeepSpeed would still flatten, all-reduce
        # and copy back every gradient after each backward (about 5% of a CPU step).
        engine.enable_backward_allreduce = False
    if config.engine.precision == "bf16" and engine.device.type == "cpu":
        _batchnorm_statistics_to(model, torch.bfloat16)
    if config.model.channels_last and engine.device.type == "cuda" and not config.engine.zero_stage:
        # cuDNN would convert NCHW weights for NHWC inputs at every convolution. Converted
        # after DeepSpeed's set-up, which flattens parameters; only with ZeRO 0, where the
        # parameters are not views into ZeRO's flat buffers (on the CPU, oneDNN follows the
        # input's layout and NCHW weights were measured faster).
        model.to(memory_format=torch.channels_last)
    return engine, optimizer


def _batchnorm_statistics_to(model: nn.Module, dtype: torch.dtype) -> None:
    """DeepSpeed's bf16 mode casts parameters but not buffers; CPU batch norm refuses bf16
    inputs with float32 running statistics (CUDA accepts them, so GPUs keep float32). The
    policy's running state is not touched: its 1% EMA updates would vanish in bf16."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for name in ("running_mean", "running_var"):
                buffer = getattr(module, name)
                if buffer is not None:
                    setattr(module, name, buffer.to(dtype))
