"""Learning rates as pure functions of the epoch, one per parameter group.

The official recipe steps its schedulers once per epoch: the classifier with StepLR(30, 0.1),
the policy with cosine annealing to 0 over all epochs; fine-tuning warms up linearly from
0.01x over 7 epochs (torchvision's LinearLR) and then hands over to the main schedule, which
starts from its own epoch 0 (torchvision's SequentialLR: the cosine then spans the epochs
after the warm-up). Computing the rate from the epoch number, instead of keeping scheduler
objects, means there is no scheduler state to checkpoint and a resumed run cannot drift from
an uninterrupted one; tests/train/test_schedules.py holds it to torch's schedulers.
"""

from __future__ import annotations

import math

from pgnm.config import ScheduleConfig


def factor(kind: str, epoch: int, config: ScheduleConfig) -> float:
    """Multiplier of the base learning rate in ``epoch`` (0-based), for step and constant."""
    warmup = config.warmup_epochs
    if epoch < warmup:
        start = config.warmup_start_factor
        return start + (1.0 - start) * epoch / warmup
    main_epoch = epoch - warmup
    if kind == "step":
        return config.gamma ** (main_epoch // config.step_size)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * main_epoch / max(1, config.epochs - warmup)))
    return 1.0


def learning_rate(base: float, kind: str, epoch: int, config: ScheduleConfig) -> float:
    value = factor(kind, epoch, config)
    if kind == "cosine" and epoch >= config.warmup_epochs:  # anneals toward min_lr, not zero
        return config.min_lr + (base - config.min_lr) * value
    return base * value
