"""Choosing the best trial and exporting its config."""

from __future__ import annotations

import math

from pgnm.config import Config, dump_config, load_config, with_overrides
from pgnm.tune.outputs import _best, best_config
from pgnm.tune.trial import score, stage_metrics

BASE = with_overrides(Config(), {"data.root": "shards", "name": "search"})
METRIC = BASE.tune.metric  # finetune/val_macro_f1


def _row(trial: str, state: str, score_: float | None, final: float | None, lr: float) -> dict:
    return {"trial": trial, "state": state, "score": score_, METRIC: final,
            "_params": {"optim.lr": lr}, "_metrics": {}}


def test_best_is_the_best_complete_trial():
    rows = [_row("a", "complete", 0.40, 0.40, 0.1),
            _row("b", "stopped early", 0.90, None, 0.2),  # a stage-1 proxy: not comparable
            _row("c", "complete", 0.55, 0.55, 0.3),
            _row("d", "complete", math.nan, math.nan, 0.4)]
    assert _best(BASE, rows)["trial"] == "c"
    low = with_overrides(BASE, {"tune.mode": "min"})
    assert _best(low, rows)["trial"] == "a"


def test_without_complete_trials_the_best_score_wins():
    rows = [_row("a", "stopped early", 0.2, None, 0.1), _row("b", "error", None, None, 0.2),
            _row("c", "stopped early", 0.3, None, 0.3)]
    assert _best(BASE, rows)["trial"] == "c"
    assert _best(BASE, [_row("b", "error", None, None, 0.2)]) is None


def test_best_config_round_trips_through_yaml(tmp_path):
    exported = best_config(BASE, _row("c", "complete", 0.5, 0.5, 0.3))
    path = tmp_path / "best.yaml"
    path.write_text(dump_config(exported))
    again = load_config(path)
    assert again == exported
    assert again.optim.lr == 0.3 and again.name == "search-best"


def test_stage_one_scores_stand_in_for_the_fine_tuned_metric():
    record = {"plain/f1_macro": 0.25, "plain/top1": 0.5, "train/loss": 1.5, "masked/top1": 0.1}
    first = stage_metrics("pretrain", record)
    assert first == {"pretrain/val_macro_f1": 0.25, "pretrain/val_top1": 0.5,
                     "pretrain/train_loss": 1.5}
    assert score(METRIC, first) == 0.25
    second = stage_metrics("finetune", {**record, "plain/f1_macro": 0.75})
    assert score(METRIC, {**first, **second}) == 0.75
