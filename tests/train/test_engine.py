"""The DeepSpeed config: every setting that changes an update written explicitly, and a JSON
override merged over it that cannot change what the typed config sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgnm.config import ConfigError, load_config, with_overrides
from pgnm.train.engine import deepspeed_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_deepspeed_json_merges_over_the_generated_config(stage):
    path = CONFIGS / "deepspeed" / f"zero{stage}.json"
    config = with_overrides(load_config(), {"engine.deepspeed_config": str(path),
                                            "engine.zero_stage": stage})
    merged = deepspeed_config(config, world_size=2)
    assert merged["zero_optimization"] == json.loads(path.read_text())["zero_optimization"]
    assert merged["train_batch_size"] == 32 * 2
    assert merged["gradient_clipping"] == 0.0  # deep merge: the generated keys stay


def test_every_setting_that_changes_an_update_is_written_explicitly():
    generated = deepspeed_config(load_config(), world_size=2)
    # DeepSpeed 0.19.8's defaults: clipping 1.0, bf16 gradients reduced in bf16, ...
    assert generated["gradient_clipping"] == 0.0
    assert generated["communication_data_type"] == "fp32"
    assert generated["data_types"] == {"grad_accum_dtype": "fp32"}
    assert generated["prescale_gradients"] is False
    assert generated["gradient_predivide_factor"] == 1.0
    assert generated["gradient_allreduce_op"] == "mean"
    assert generated["fp16"] == {"enabled": False}
    assert generated["bf16"]["immediate_grad_update"] is True
    assert generated["bf16"]["bf16_master_weights_and_grads"] is False
    assert generated["bf16"]["check_grad_overflow"] is False
    clipped = deepspeed_config(with_overrides(load_config(), {"optim.grad_clip": 2.5}), 1)
    assert clipped["gradient_clipping"] == 2.5


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ({"gradient_clipping": 1.0}, "gradient_clipping=1.0"),
        ({"zero_optimization": {"stage": 2}}, "zero_optimization.stage=2"),
        ({"bf16": {"enabled": True}}, "bf16.enabled=True"),
        ({"train_micro_batch_size_per_gpu": 8}, "train_micro_batch_size_per_gpu=8"),
    ],
)
def test_deepspeed_json_cannot_change_what_the_typed_config_sets(tmp_path, content, key):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(content))
    config = with_overrides(load_config(), {"engine.deepspeed_config": str(path)})
    with pytest.raises(ConfigError, match=f"{path} sets {key}, but pgnm sets it"):
        deepspeed_config(config, world_size=1)


def test_deepspeed_json_may_repeat_what_the_typed_config_sets(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"gradient_clipping": 0.0, "zero_optimization": {
        "stage": 0, "reduce_bucket_size": 1000}}))
    config = with_overrides(load_config(), {"engine.deepspeed_config": str(path)})
    merged = deepspeed_config(config, world_size=1)
    assert merged["zero_optimization"] == {"stage": 0, "reduce_bucket_size": 1000}


def test_bf16_with_zero_0_is_refused_for_its_bf16_master_weights():
    with pytest.raises(ConfigError, match="needs engine.zero_stage >= 1"):
        with_overrides(load_config(), {"engine.precision": "bf16"})
