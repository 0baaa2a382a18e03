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
