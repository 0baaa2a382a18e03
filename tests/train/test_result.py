"""``fit``'s typed result and its JSON form, ``summary.json``."""

from __future__ import annotations

import json
from pathlib import Path

from pgnm.names import Stage
from pgnm.tracking.registry import RegisteredModel
from pgnm.train.result import FitResult


def test_the_result_round_trips_through_summary_json(tmp_path):
    registered = RegisteredModel("models:/m/3", "m", "3", "models:/m@current", "m-abc")
    result = FitResult(Stage.FINETUNE, "run", 12, 34.5, 2, tmp_path, {"plain/top1": 0.5},
                       0.0, tmp_path / "model" / "model.pt", None, "r1", "sqlite:///x.db",
                       registered)
    written = result.write()
    data = json.loads(written.read_text())
    assert data["stage"] == "finetune" and data["model"] == str(tmp_path / "model" / "model.pt")
    assert data["registered"]["model_uri"] == "models:/m/3"
    again = FitResult.read(tmp_path)
    assert again == result
    assert again.stage is Stage.FINETUNE and isinstance(again.out_dir, Path)


def test_a_stage_is_its_string_everywhere_a_string_goes():
    assert Stage("pretrain") is Stage.PRETRAIN and Stage.PRETRAIN == "pretrain"
    assert f"{Stage.FINETUNE}" == str(Stage.FINETUNE) == "finetune"
    assert json.dumps({"stage": Stage.PRETRAIN}) == '{"stage": "pretrain"}'
    assert Stage.PRETRAIN.policy_allowed and not Stage.FINETUNE.policy_allowed
