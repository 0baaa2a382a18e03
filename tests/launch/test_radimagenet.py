"""launch/radimagenet.py: the real-data plan, checked without a GPU or the data set."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("radimagenet", ROOT / "launch" / "radimagenet.py")
radimagenet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(radimagenet)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def radimagenet_cli(capsys):
    """The launcher in-process, as its command line would run it (nothing is trained here)."""

    def run(*args: str) -> Ran:
        try:
            radimagenet.main(list(args))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return run


def test_the_dry_run_keeps_the_global_batch_and_feeds_every_model_to_the_protocol(
        tmp_path, radimagenet_cli):
    done = radimagenet_cli("--src", str(tmp_path), "--arch", "resnet18", "--gpus", "4", "--dry-run")
    assert done.returncode == 0, done.stderr
    commands = done.stdout.strip().splitlines()
    assert len(commands) == 11  # shard, 3 heated stage 1, 2 baselines, 4 stage 2, few-shot
    assert "radimagenet_to_wds" in commands[0]
    trained = [c for c in commands if c.startswith("deepspeed --num_gpus 4 ")]
    assert len(trained) == 9
    assert all("data.batch_size=64" in c for c in trained)  # 256 / 4 GPUs
    assert sum("policy.learn=false" in c for c in trained) == 1
    (efflr,) = [c for c in trained if "effective-lr" in c]
    assert f"optim.lr={0.1 * math.log(64 ** 2):.6g}" in efflr
    fewshot = commands[-1]
    assert "launch/fewshot.py" in fewshot and "model.arch=resnet18" in fewshot
    assert "fewshot.workers=4" in fewshot  # one fine-tune per GPU
    for run in ("finetune-resnet18-paper", "finetune-resnet18-reinforce",
                "finetune-resnet18-random-mask", "baseline-resnet18",
                "finetune-resnet18-baseline", "baseline-resnet18-effective-lr"):
        assert f"=runs/{run}/model/model.pt" in fewshot
        # every model the protocol reads is one this plan trains
        assert any(f"name={run}" in c for c in trained)


def test_bad_input_is_one_line_naming_the_flag_or_config_key(tmp_path, radimagenet_cli):
    odd = radimagenet_cli("--src", str(tmp_path), "--gpus", "3", "--dry-run")
    assert odd.returncode != 0 and "--gpus 3" in odd.stderr and "Traceback" not in odd.stderr
    no_release = radimagenet_cli("--src", str(tmp_path))
    assert no_release.returncode != 0 and "radiology_ai/" in no_release.stderr
    # A release is there but a downstream set is not: refused before any training starts.
    (tmp_path / "radiology_ai").mkdir()
    missing = radimagenet_cli("--src", str(tmp_path))
    assert missing.returncode != 0
    assert "fewshot.datasets.organamnist" in missing.stderr, missing.stderr
    assert "deepspeed" not in missing.stdout and "Traceback" not in missing.stderr
