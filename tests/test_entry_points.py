"""The ``pgnm`` command, configs by name, and the one-line errors for a missing extra."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from pgnm.cli import main
from pgnm.commands import NAMES
from pgnm.config import load_config
from pgnm.config_files import config_names, resolve_config
from pgnm.errors import ConfigError, MissingExtra, PgnmError, require_extra

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert NAMES == ("pretrain", "finetune", "tune", "fewshot", "preview")
    for name in NAMES:
        assert f"\n  {name} " in out


def test_an_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["pretrian"])
    assert stop.value.code == 2
    assert "invalid choice: 'pretrian'" in capsys.readouterr().err


def test_a_command_reads_the_config_as_its_launch_script_does(capsys, monkeypatch):
    """``pgnm finetune`` and ``python launch/finetune.py`` are one parser and one config; the
    deepspeed launcher's --local_rank may come before the command."""
    args = ["--config", str(CONFIGS / "finetune" / "smoke.yaml"), "optim.lr=0.5", "--print-config"]
    script = ROOT / "launch" / "finetune.py"
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the checkout first
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(script), run_name="__main__")
    assert stop.value.code == 0
    launched = capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["--local_rank=1", "finetune", *args])
    assert stop.value.code == 0
    assert capsys.readouterr().out == launched
    assert "lr: 0.5" in launched


def test_configs_resolve_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = load_config(CONFIGS / "pretrain" / "smoke.yaml")
    for name in ("pretrain/smoke", "pretrain/smoke.yaml", "configs/pretrain/smoke.yaml"):
        assert load_config(name) == shipped
    names = config_names()
    assert names == sorted(p.relative_to(CONFIGS).with_suffix("").as_posix()
                           for p in CONFIGS.rglob("*.yaml"))
    assert {"pretrain/smoke", "finetune/smoke", "tune/smoke", "preview"} <= set(names)


def test_an_existing_file_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "smoke.yaml").write_text("name: mine\n")
    assert load_config("pretrain/smoke.yaml").name == "mine"
    assert resolve_config("pretrain/smoke.yaml") == Path("pretrain/smoke.yaml")
    assert load_config("pretrain/smoke").name == "smoke-pretrain"  # no file of that name


def test_an_unknown_name_lists_the_names_on_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config("pretrain/smok")
    message = str(err.value)
    assert "\n" not in message and "config file not found: pretrain/smok" in message
    assert all(name in message for name in config_names())
    with pytest.raises(SystemExit) as stop:
        main(["pretrain", "--config", "pretrain/smok"])
    assert stop.value.code == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("pgnm pretrain: error: config file")


def test_a_missing_extra_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # as if DALI were not installed
    with pytest.raises(MissingExtra) as err:
        require_extra("nvidia.dali", ("dali-cuda12", "dali-cpu"), "data.loader=dali",
                      "data.loader=auto")
    assert isinstance(err.value, PgnmError) and isinstance(err.value, ImportError)
    assert str(err.value) == (
        "data.loader=dali needs nvidia.dali, which is not installed: pip install the extra for "
        "this machine, 'pgnm[dali-cuda12]' or 'pgnm[dali-cpu]'; or set data.loader=auto")


def test_a_broken_install_keeps_its_traceback(monkeypatch):
    def broken(name, *args, **kwargs):  # the package is there, one of its own imports is not
        raise ModuleNotFoundError("No module named 'libnvjpeg_stub'", name="libnvjpeg_stub")

    monkeypatch.setattr("importlib.import_module", broken)
    with pytest.raises(ModuleNotFoundError) as err:
        require_extra("fake_dali", "dali-cpu", "x")
    assert not isinstance(err.value, MissingExtra)


def test_the_loader_and_the_searcher_name_their_extras(tiny_config, monkeypatch):
    from pgnm.config import with_overrides
    from pgnm.data import choose_loader
    from pgnm.tune.search import check

    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(MissingExtra, match=r"pgnm\[dali-cuda12\]"):
        choose_loader(with_overrides(tiny_config, {"data.loader": "dali"}))
    assert choose_loader(tiny_config) == "webdataset"  # auto: DALI where it is installed
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(MissingExtra, match=r"pip install 'pgnm\[optuna\]'"):
        check(with_overrides(tiny_config, {"tune.searcher": "optuna",
                                           "tune.search_space": {"mask.grid": {"choice": [8]}}}))
