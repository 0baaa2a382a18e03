"""The search space is checked against the typed config before Ray starts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from launching import ROOT, environment

from pgnm.config import Config, ConfigError, with_overrides
from pgnm.tune import check
from pgnm.tune.space import searched_keys, to_param_space, validate_space

BASE = with_overrides(Config(), {"data.root": "shards"})


def test_valid_space_becomes_ray_domains():
    from ray.tune.search.sample import Categorical, Float, Integer

    space = {
        "mask.grid": {"choice": [16, 32, 64]},
        "optim.lr": {"loguniform": [0.01, 0.3]},
        "mask.kernel_size": {"randint": [3, 14]},
        "objective.name": {"grid": ["paper", "reinforce"]},
        "policy.input_size": 64,
    }
    validate_space(BASE, space)
    domains = to_param_space(space)
    assert isinstance(domains["mask.grid"], Categorical)
    assert isinstance(domains["optim.lr"], Float)
    assert (domains["optim.lr"].lower, domains["optim.lr"].upper) == (0.01, 0.3)
    assert isinstance(domains["mask.kernel_size"], Integer)
    assert domains["objective.name"] == {"grid_search": ["paper", "reinforce"]}
    assert domains["policy.input_size"] == 64
    assert searched_keys(space) == ["mask.grid", "optim.lr", "mask.kernel_size", "objective.name"]


@pytest.mark.parametrize(
    ("space", "named"),
    [
        ({"mask.gird": {"choice": [8]}}, "mask.gird"),  # misspelt key
        ({"mask.grid": {"uniform": [8, 64]}}, "mask.grid"),  # a float range for an int field
        ({"objective.name": {"choice": ["paper", "adversarial"]}}, "objective.name"),
        ({"optim.lr": {"loguniform": [0.1]}}, "optim.lr.loguniform"),  # wrong arity
        ({"optim.lr": {"between": [0.1, 1]}}, "optim.lr"),  # unknown spec
        ({"mask.grid": {"randint": [0, 8]}}, "mask.grid"),  # grid must be >= 1
        ({}, "tune.search_space"),
    ],
)
def test_bad_space_names_the_key(space, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate_space(BASE, space)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"tune.metric": "finetune/val_accuracy"}, "tune.metric"),
        ({"tune.finetune_epochs": 0}, "tune.finetune_epochs"),
        ({"tune.searcher": "optuna",
          "tune.search_space": {"objective.name": {"grid": ["paper", "reinforce"]}}}, "optuna"),
        ({"policy.enabled": False}, "policy.enabled"),
        ({"engine.checkpoints": False}, "engine.checkpoints"),
        ({}, "data.root=shards"),  # no shards there: refused before Ray starts
    ],
)
def test_search_settings_are_checked(overrides, named):
    config = with_overrides(BASE, {"tune.search_space": {"mask.grid": {"choice": [8, 16]}},
                                   **overrides})
    with pytest.raises(ConfigError, match=named):
        check(config)


def test_launcher_refuses_a_bad_key_before_ray_starts(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "launch" / "tune.py"), f"run_dir={tmp_path}",
         "data.root=shards", "tune.search_space={mask.gird: {choice: [8, 16]}}"],
        env=environment(), capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2
    assert "tune.search_space.mask.gird" in run.stderr
    assert "Traceback" not in run.stderr
    assert not any(tmp_path.rglob("ray")), "Ray must not start for a config error"


def test_schedulers_and_searchers_come_from_the_config():
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule
    from ray.tune.search.optuna import OptunaSearch

    from pgnm.tune.search import _scheduler, _searcher

    assert isinstance(_scheduler(BASE, max_t=4), AsyncHyperBandScheduler)
    for name, kind in (("fifo", FIFOScheduler), ("median", MedianStoppingRule)):
        assert isinstance(_scheduler(with_overrides(BASE, {"tune.scheduler": name}), 4), kind)
    assert _searcher(BASE) is None  # Tune's random/grid variant generator
    assert isinstance(_searcher(with_overrides(BASE, {"tune.searcher": "optuna"})), OptunaSearch)
