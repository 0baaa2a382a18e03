import math

import pytest

from pgnm.config import ConfigError, load_config
from pgnm.protocol.inits import InitResolver, with_controls

PRETRAIN = {"stage": "pretrain", "overrides": {"mask.grid": 16, "optim.lr": 0.02}}
STAGE2 = {"stage": "finetune", "overrides": {"optim.lr": 0.001, "schedule.epochs": 2}}
BASELINE = {"stage": "finetune", "overrides": {"optim.lr": 0.02}}


def _fewshot(**fewshot):
    return load_config(overrides=[f"fewshot={fewshot}"]).fewshot


def test_controls_are_derived_from_the_baseline_and_the_reference():
    fs = _fewshot(inits={"heated-paper": {"train": [PRETRAIN, STAGE2]},
                         "baseline": {"train": [BASELINE]}, "random": {}})
    inits, notes = with_controls(fs)
    equal, effective = inits["baseline-equal-budget"], inits["baseline-effective-lr"]
    assert equal.model == "init:baseline" and equal.train[0].overrides == STAGE2["overrides"]
    assert effective.train[0].overrides["optim.lr"] == pytest.approx(0.02 * math.log(16 ** 2))
    assert "log 16^2" in notes["baseline-effective-lr"]
    numeric = fs.model_copy(update={"controls": fs.controls.model_copy(
        update={"lr_factor": 8.0})})
    assert with_controls(numeric)[0]["baseline-effective-lr"].train[0].overrides[
        "optim.lr"] == pytest.approx(0.16)


def test_the_random_mask_control_freezes_the_references_stage_1_policy():
    fs = _fewshot(inits={"heated-paper": {"train": [PRETRAIN, STAGE2]},
                         "baseline": {"train": [BASELINE]}},
                  controls={"equal_budget": False, "effective_lr": False})
    inits, notes = with_controls(fs)
    control = inits["random-mask"]
    assert [s.stage for s in control.train] == ["pretrain", "finetune"]
    assert control.train[0].overrides == {**PRETRAIN["overrides"], "policy.learn": False}
    assert control.train[1] == fs.inits["heated-paper"].train[1]
    assert "frozen" in notes["random-mask"]
    given = _fewshot(inits={"heated-paper": {"model": "x.pt"}, "baseline": {"model": "y.pt"}},
                     controls={"equal_budget": False, "effective_lr": False})
    with pytest.raises(ConfigError, match="fewshot.controls.random_mask.*pretrain stage"):
        with_controls(given)


def test_controls_that_cannot_be_derived_name_the_key():
    fs = _fewshot(inits={"heated-paper": {"model": "x.pt"}, "baseline": {"model": "y.pt"}})
    with pytest.raises(ConfigError, match="fewshot.controls.equal_budget"):
        with_controls(fs)
    fs = _fewshot(inits={"heated-paper": {"model": "x.pt"}, "baseline": {"model": "y.pt"}},
                  controls={"effective_lr": False, "random_mask": False, "stage2": STAGE2})
    assert with_controls(fs)[0]["baseline-equal-budget"].model == "init:baseline"
    off = _fewshot(inits={"random": {}}, controls={"equal_budget": False,
                                                   "effective_lr": False, "random_mask": False})
    assert list(with_controls(off)[0]) == ["random"]


def test_bad_keys_and_loops_are_named(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("fewshot:\n  inits:\n    a: {modle: x.pt}\n")
    with pytest.raises(ConfigError, match=r"(?s)f\.yaml.*fewshot\.inits\.a\.modle"):
        load_config(path)
    with pytest.raises(ConfigError, match="fewshot.sizes"):
        load_config(overrides=["fewshot.sizes=[8, 8]"])
    fs = _fewshot(inits={"a": {"model": "init:b"}, "b": {"model": "init:a"}})
    with pytest.raises(ConfigError, match="loop"):
        InitResolver(dict(fs.inits), None, tmp_path, None)("a")


def test_a_finished_stage_survives_keys_added_since_and_a_real_change_is_named(tmp_path):
    """A stage trained before pgnm grew a key (the stamp lacks it) is reused: the key counts
    at its default. A value that differs is refused, naming the key, then and now."""
    import yaml

    from pgnm.config import dump_config, with_overrides
    from pgnm.protocol.inits import trained_config_changes

    config = load_config(overrides=["optim.lr=0.02"])
    older = yaml.safe_load(dump_config(config))
    del older["fewshot"]["lrs"], older["fewshot"]["workers"]  # written before they existed
    stamp = tmp_path / "protocol-stage.yaml"
    stamp.write_text(yaml.safe_dump(older))
    assert trained_config_changes(stamp, config) == ""
    changed = trained_config_changes(stamp, with_overrides(config, {"optim.lr": 0.05}, "t"))
    assert changed == "optim.lr: 0.02 then, 0.05 now"
    older["optim"]["learning_rate"] = 0.1  # a key this pgnm does not know
    stamp.write_text(yaml.safe_dump(older))
    assert "optim.learning_rate" in trained_config_changes(stamp, config)
