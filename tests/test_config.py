from __future__ import annotations

import pytest
from pydantic import ValidationError

from pgnm.config import (
    Config,
    ConfigError,
    config_from_argv,
    dump_config,
    flatten,
    load_config,
    parse_overrides,
    with_overrides,
)


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_official_recipe():
    c = Config()
    assert (c.mask.grid, c.mask.kernel_size, c.mask.sigma) == (64, 13, 6.0)
    assert (c.policy.trunk, c.policy.hidden_dim) == ("resnet10t", 512)
    assert (c.policy.mixing_decay, c.policy.state_momentum) == (0.9, 0.99)
    assert (c.optim.lr, c.optim.momentum, c.optim.weight_decay) == (0.1, 0.9, 1e-4)
    assert c.optim.policy_lr_ratio == 0.1
    assert (c.schedule.epochs, c.schedule.classifier, c.schedule.step_size) == (90, "step", 30)
    assert (c.schedule.gamma, c.schedule.policy) == (0.1, "cosine")
    assert (c.data.batch_size, c.data.image_size, c.data.eval_resize) == (32, 224, 256)
    assert (c.data.mean, c.data.std) == (0.3162, 0.3213)
    assert c.objective.name == "paper" and c.policy.input_size is None


def test_yaml_then_overrides_take_precedence(tmp_path):
    path = write(tmp_path, "model:\n  arch: resnet50\noptim:\n  lr: 1e-3\nmask:\n  grid: 32\n")
    c = load_config(path, ["mask.grid=16", "objective.name=reinforce"])
    assert c.model.arch == "resnet50"
    assert c.optim.lr == pytest.approx(1e-3) and isinstance(c.optim.lr, float)
    assert c.mask.grid == 16 and c.objective.name == "reinforce"
    assert c.model.num_classes is None  # untouched keys keep their defaults (null: from data)


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "key"),
    [
        ("model:\n  archh: resnet18\n", [], "model.archh"),
        ("", ["optim.lrr=0.1"], "optim.lrr"),
        ("", ["optim.lr=fast"], "optim.lr"),
        ("", ["model.num_classes=1.5"], "model.num_classes"),
        ("", ["seed=true"], "seed"),
        ("", ["objective.name=adversarial"], "objective.name"),
        ("", ["mask.kernel_size=12"], "mask.kernel_size"),
        ("", ["optim.lr=-1"], "optim.lr"),
        ("unknown_section:\n  a: 1\n", [], "unknown_section"),
    ],
)
def test_bad_keys_and_types_name_the_key(tmp_path, yaml_text, overrides, key):
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    assert key in str(err.value)
    assert str(path) in str(err.value)


def test_override_into_a_value_is_refused():
    with pytest.raises(ConfigError, match="model.arch"):
        load_config(overrides=["model.arch.depth=3"])
    with pytest.raises(ConfigError, match="model.arch is a value"):
        with_overrides(Config(), {"model.arch.depth": 3})


@pytest.mark.parametrize("item", ["optim.lr", "=3", "model..arch=x"])
def test_malformed_overrides(item):
    with pytest.raises(ConfigError, match="override"):
        load_config(overrides=[item])


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found: .*missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="run.yaml: not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_kernel_must_fit_the_image():
    with pytest.raises(ConfigError, match="mask.kernel_size=17 needs data.image_size > 8"):
        load_config(overrides=["data.image_size=8", "mask.kernel_size=17"])


def test_checkpoint_interval_needs_checkpoints():
    with pytest.raises(ConfigError, match="engine.checkpoint_every needs engine.checkpoints"):
        load_config(overrides=["engine.checkpoints=false", "engine.checkpoint_every=5"])


def test_override_values_are_typed_like_yaml():
    assert parse_overrides(["a=0.1", "b=1e-4", "c=true", "d=null", "e=resnet18", "f=[1, 2]"]) == {
        "a": 0.1,
        "b": 1e-4,
        "c": True,
        "d": None,
        "e": "resnet18",
        "f": [1, 2],
    }


def test_dump_round_trips(tmp_path):
    c = load_config(overrides=["optim.lr=3e-5", "policy.input_size=64", "tune.search_space={a: 1}"])
    assert load_config(write(tmp_path, dump_config(c))) == c


def test_flatten_gives_dotted_keys_for_every_leaf():
    flat = flatten(Config())
    assert flat["optim.lr"] == 0.1 and flat["mask.grid"] == 64 and flat["seed"] == 0
    assert all(not isinstance(v, Config) for v in flat.values())
    sections = {k.split(".")[0] for k in flat if "." in k}
    assert sections == {
        "model",
        "policy",
        "mask",
        "objective",
        "optim",
        "schedule",
        "data",
        "engine",
        "tracking",
        "tune",
        "fewshot",
    }


def test_with_overrides_leaves_the_original_alone():
    base = Config()
    changed = with_overrides(base, {"mask.grid": 16})
    assert changed.mask.grid == 16 and base.mask.grid == 64
    with pytest.raises(ConfigError, match="mask.gird"):
        with_overrides(base, {"mask.gird": 16})


def test_config_is_frozen():
    with pytest.raises(ValidationError, match="frozen"):
        Config().optim.lr = 1.0  # type: ignore[misc]


def test_command_line(tmp_path, capsys):
    path = write(tmp_path, "name: cli\n")
    c = config_from_argv(["--config", str(path), "--local_rank=1", "optim.lr=0.2"])
    assert (c.name, c.optim.lr) == ("cli", 0.2)
    with pytest.raises(SystemExit) as exit_info:
        config_from_argv(["--print-config", "mask.grid=8"])
    assert exit_info.value.code == 0
    assert "grid: 8" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        config_from_argv(["optim.momentun=0.5"])
    assert exit_info.value.code == 2
    assert "optim.momentun" in capsys.readouterr().err
