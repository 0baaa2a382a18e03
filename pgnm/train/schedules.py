"""Learning rates as pure functions of the epoch, one per parameter group.

The official recipe steps its schedulers once per epoch: the classifier with StepLR(30, 0.1),
the policy with cosine annealing to 0 over all epochs; fine-tuning warms up linearly from
0.01x over 7 epochs (torchvision's LinearLR) and then follows the schedule. Computing the rate
from the epoch number, instead of keeping scheduler objects, means there is no scheduler state
to checkpoint and a resumed run cannot drift from an uninterrupted one.
"""

from __future__ import annotations

import math

from pgnm.config import ScheduleConfig


def factor(kind: str, epoch: int, config: ScheduleConfig) -> float:
    """Multiplier of the base learning rate in ``epoch`` (0-based)."""
    if kind == "step":
        value = config.gamma ** (epoch // config.step_size)
    elif kind == "cosine":
        value = 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    else:
        value = 1.0
    if epoch < config.warmup_epochs:
        start = config.warmup_start_factor
        value *= start + (1.0 - start) * epoch / config.warmup_epochs
    return value


def learning_rate(base: float, kind: str, epoch: int, config: ScheduleConfig) -> float:
    if kind == "cosine":  # anneal toward min_lr rather than toward zero
        return config.min_lr + (base - config.min_lr) * factor(kind, epoch, config)
    return base * factor(kind, epoch, config)
