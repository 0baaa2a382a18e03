"""One DeepSpeed engine over the joint module, with a parameter group per network.

The official loss runs through the policy and the classifier in one backward pass; DeepSpeed
cannot split one backward across two engines (stack.md §5.4), so both networks live in one
module and one engine, as two parameter groups of one SGD optimizer. Learning rates are set
per group at each epoch from ``schedules`` (no DeepSpeed scheduler).

The DeepSpeed config is generated from the typed config (micro batch, accumulation, ZeRO
stage, bf16, clipping); ``engine.deepspeed_config`` may name a JSON file whose entries are
merged over the generated ones, for settings pgnm does not model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from pgnm.config import Config
from pgnm.train.schedules import learning_rate


def deepspeed_config(config: Config, world_size: int) -> dict:
    micro, accum = config.data.batch_size, config.optim.grad_accum_steps
    generated: dict = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "train_batch_size": micro * accum * world_size,
        "zero_optimization": {"stage": config.engine.zero_stage},
        "bf16": {"enabled": config.engine.precision == "bf16"},
        "steps_per_print": 10**9,  # progress is ours to report
        "wall_clock_breakdown": False,
        # ZeRO refuses optimisers it has not been tested with unless told; SGD is fine.
        "zero_allow_untested_optimizer": True,
    }
    if config.optim.grad_clip is not None:
        generated["gradient_clipping"] = config.optim.grad_clip
    if config.engine.deepspeed_config:
        path = Path(config.engine.deepspeed_config)
        try:
            overrides = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"engine.deepspeed_config: cannot read {path}: {err}") from None
        generated.update(overrides)
    return generated


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
