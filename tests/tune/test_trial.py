"""A trial's device follows the resources Ray gives it."""

from __future__ import annotations

import pytest

from pgnm.config import Config, ConfigError, with_overrides
from pgnm.tune import check
from pgnm.tune.trial import SearchContext, TrialState, stage_configs


@pytest.mark.parametrize(("gpus", "device"), [(0.0, "cpu"), (1.0, "cuda"), (0.5, "cuda")])
def test_each_stage_runs_where_the_trial_has_resources(gpus, device):
    base = with_overrides(Config(), {"data.root": "shards", "tune.gpus_per_worker": gpus})
    context = SearchContext(base, "search", None, None, None)
    first, second = stage_configs(context, {"optim.lr": 0.05}, "t0", None,
                                  TrialState(heated="heated.pt"))
    assert first.engine.device == second.engine.device == device


def test_a_device_the_trials_cannot_have_is_refused(tmp_path):
    config = with_overrides(Config(), {"data.root": str(tmp_path), "engine.device": "cuda",
                                       "tune.search_space": {"optim.lr": {"choice": [0.01, 0.1]}}})
    with pytest.raises(ConfigError, match="engine.device=cuda but tune.gpus_per_worker=0.0"):
        check(config)
