"""The protocol's row bookkeeping: finished rows read back, and the lr chosen per draw."""

from __future__ import annotations

import json
import math

import pytest

from pgnm.config import ConfigError, load_config, with_overrides
from pgnm.protocol import run_protocol
from pgnm.protocol.report import choose_lr, lr_counts, read_rows


def row(init: str, lr: float, value: float, trial: int = 0) -> dict:
    return {"init": init, "dataset": "d", "k": 8, "trial": trial, "lr": lr,
            "selected_value": value}


def test_rows_written_before_a_field_existed_get_its_stated_default(tmp_path):
    path = tmp_path / "trials.jsonl"
    old = {"init": "a", "dataset": "d", "k": 8, "trial": 0}
    path.write_text(json.dumps(old) + "\n" + json.dumps({**old, "lr": 0.1}) + "\n{\"init\": ")
    rows = read_rows(path, also=("lr",), missing={"lr": 0.05})
    assert sorted(rows) == [("a", "d", 8, 0, 0.05), ("a", "d", 8, 0, 0.1)]  # cut line ignored
    with pytest.raises(KeyError):
        read_rows(path, also=("lr",))  # without a default an old row is not guessed


def test_the_lr_with_the_best_val_value_is_chosen_per_draw():
    rows = [row("a", 0.1, 0.9), row("a", 0.02, 0.4), row("a", 0.05, 0.4),  # tie: smaller lr
            row("b", 0.02, math.nan), row("b", 0.05, 2.0),  # a diverged run is never chosen
            row("a", 0.1, 0.3, trial=1), row("a", 0.02, 0.5, trial=1)]
    chosen = {(r["init"], r["trial"]): r["lr"] for r in choose_lr(rows, "loss")}
    assert chosen == {("a", 0): 0.02, ("b", 0): 0.05, ("a", 1): 0.1}
    by_f1 = {(r["init"], r["trial"]): r["lr"] for r in choose_lr(rows, "f1_macro")}
    assert by_f1[("a", 0)] == 0.1  # higher is better for a score
    assert lr_counts(choose_lr(rows, "loss")) == {"d": {"a": {"0.02": 1, "0.1": 1},
                                                        "b": {"0.05": 1}}}


def test_lrs_need_a_val_selection_and_distinct_positive_values(tmp_path):
    config = with_overrides(load_config(), {"fewshot.datasets": {"d": str(tmp_path)},
                                            "fewshot.inits": {"random": {}},
                                            "fewshot.lrs": [0.01, 0.1]}, "test")
    assert config.fewshot.lrs == [0.01, 0.1]
    with pytest.raises(ConfigError, match=r"fewshot\.lrs=.*fewshot\.selection=best_val"):
        run_protocol(with_overrides(config, {"fewshot.selection": "last"}, "test"))
    for bad in ([0.1, 0.1], [0.0], [-0.1]):
        with pytest.raises(ConfigError, match="fewshot.lrs"):
            with_overrides(config, {"fewshot.lrs": bad}, "test")
