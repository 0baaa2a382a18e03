"""``--help`` is generated from the typed config: every key, its default, its comment."""

from __future__ import annotations

import subprocess
import sys

from launching import ROOT

from pgnm.config import Config, flatten
from pgnm.config_help import config_keys_help


def test_every_key_is_listed_with_its_default_and_comment():
    text = config_keys_help(Config())
    for key, value in flatten(Config()).items():
        assert f"  {key} = {value!r}" in text, key
    assert "G: one Beta sample per cell of a G x G grid" in text  # mask.grid's comment
    assert "policy lr = lr * ratio (official: lr / 10)" in text


def test_the_launchers_help_lists_the_keys():
    out = subprocess.run([sys.executable, str(ROOT / "launch" / "finetune.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "optim.lr = 0.1" in out.stdout and "mask.kernel = 'auto'" in out.stdout
