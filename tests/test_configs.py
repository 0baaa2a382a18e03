"""Every shipped config loads, and the paper configs keep the official recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgnm.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_yaml_config_loads(path):
    load_config(path)


@pytest.mark.parametrize("arch", ["resnet10t", "resnet18", "resnet50"])
def test_paper_configs_are_the_official_recipe(arch):
    pre = load_config(CONFIGS / "pretrain" / f"paper_{arch}.yaml")
    assert (pre.model.arch, pre.mask.grid, pre.mask.kernel_size, pre.mask.sigma) == (
        arch,
        64,
        13,
        6.0,
    )
    assert (pre.optim.lr, pre.schedule.epochs, pre.data.batch_size) == (0.1, 90, 32)
    assert pre.objective.name == "paper" and pre.policy.enabled
    fine = load_config(CONFIGS / "finetune" / f"paper_{arch}.yaml")
    assert not fine.policy.enabled and fine.optim.lr == 0.001
    assert (fine.schedule.epochs, fine.schedule.warmup_epochs) == (10, 7)
