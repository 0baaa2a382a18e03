from __future__ import annotations

import pytest

from pgnm.config import ScheduleConfig
from pgnm.train.schedules import learning_rate


def test_classifier_step_schedule_is_steplr_30():
    config = ScheduleConfig()
    rates = [learning_rate(0.1, "step", e, config) for e in (0, 29, 30, 59, 60, 89)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_policy_cosine_anneals_to_min_lr():
    config = ScheduleConfig()
    assert learning_rate(0.01, "cosine", 0, config) == pytest.approx(0.01)
    assert learning_rate(0.01, "cosine", 45, config) == pytest.approx(0.005)
    assert learning_rate(0.01, "cosine", 90, config) == pytest.approx(0.0)


def test_finetune_warmup_is_torchvision_linearlr():
    config = ScheduleConfig(epochs=10, warmup_epochs=7, warmup_start_factor=0.01)
    rates = [learning_rate(1e-3, "step", e, config) for e in range(10)]
    expected = [1e-3 * (0.01 + 0.99 * e / 7) for e in range(7)] + [1e-3] * 3
    assert rates == pytest.approx(expected)


def _torch_rates(kind: str, config: ScheduleConfig, base: float) -> list[float]:
    """The rates torchvision's reference recipe gets from torch's own schedulers."""
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    warmup = config.warmup_epochs
    if kind == "step":
        main = torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    else:
        main = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.epochs - warmup, eta_min=config.min_lr)
    scheduler = main
    if warmup:
        linear = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=config.warmup_start_factor, total_iters=warmup)
        scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [linear, main], [warmup])
    rates = []
    for _ in range(config.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("kind", ["step", "cosine"])
@pytest.mark.parametrize("warmup", [0, 3])
def test_every_schedule_is_torchs_sequential_lr(kind, warmup):
    config = ScheduleConfig(epochs=12, step_size=4, gamma=0.1, warmup_epochs=warmup,
                            warmup_start_factor=0.01, min_lr=1e-4)
    ours = [learning_rate(0.1, kind, e, config) for e in range(config.epochs)]
    assert ours == pytest.approx(_torch_rates(kind, config, 0.1), rel=1e-9, abs=1e-12)
