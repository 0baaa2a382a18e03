"""SIGKILL mid-run, resume: bit-identical weights. NaN guard and early config failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from launching import ROOT, command, environment, train

from pgnm.train.checkpoint import complete_checkpoints, resolve_resume

pytestmark = pytest.mark.slow

# 3 epochs-worth of steps, a checkpoint every 3 steps: the kill lands mid-epoch.
RESUMABLE = ["schedule.epochs=3", "engine.checkpoint_every=3", "objective.name=reinforce"]


def weights(run_dir: Path, name: str) -> dict[str, torch.Tensor]:
    model = run_dir / name / "model"
    state = torch.load(model / "model.pt", weights_only=True)["state_dict"]
    policy = torch.load(model / "policy.pt", weights_only=True)["state_dict"]
    return {**state, **{f"policy.{k}": v for k, v in policy.items()}}


def kill_after_first_checkpoint(cmd: list[str], checkpoints: Path) -> None:
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=environment(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while not list(checkpoints.glob("step-*/complete.json")):
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every rank, no clean-up
    proc.wait()


@pytest.mark.parametrize("ranks", [1, 2])
def test_sigkill_and_resume_is_bit_identical(tiny_shards, tmp_path, ranks):
    train("pretrain.py", ranks, tiny_shards, tmp_path / "straight", "name=run", *RESUMABLE)
    interrupted = tmp_path / "interrupted"
    cmd = command("pretrain.py", ranks, tiny_shards, interrupted, "name=run", *RESUMABLE)
    kill_after_first_checkpoint(cmd, interrupted / "run" / "checkpoints")
    assert not (interrupted / "run" / "summary.json").exists()
    resumed = train("pretrain.py", ranks, tiny_shards, interrupted, "name=run", *RESUMABLE)
    assert "resumed from" in resumed.stdout
    straight, again = weights(tmp_path / "straight", "run"), weights(interrupted, "run")
    assert straight.keys() == again.keys()
    different = [k for k in straight if not torch.equal(straight[k], again[k])]
    assert different == []


def test_resume_skips_unfinished_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    for step, complete in ((3, True), (6, True), (9, False)):
        folder = root / f"step-{step:08d}"
        folder.mkdir(parents=True)
        if complete:
            (folder / "complete.json").write_text(json.dumps({"global_step": step}))
    (root / ".staging-step-00000012").mkdir()  # a write killed half-way
    assert [p.name for p in complete_checkpoints(root)] == ["step-00000003", "step-00000006"]
    assert resolve_resume("auto", root).name == "step-00000006"
    assert resolve_resume("never", root) is None
    with pytest.raises(FileNotFoundError, match="complete.json missing"):
        resolve_resume(str(root / "step-00000009"), root)


def test_nan_loss_stops_naming_step_and_rank_and_keeps_the_checkpoint(tiny_shards, tmp_path):
    result = train(
        "pretrain.py",
        2,
        tiny_shards,
        tmp_path,
        "name=nan",
        "optim.lr=1e30",
        "engine.checkpoint_every=1",
        "policy.logit_clamp=null",
        expect_ok=False,
    )
    assert result.returncode != 0
    message = result.stderr
    assert "non-finite value at step" in message and "on rank" in message
    assert "error (pretrain, rank" in message
    done = complete_checkpoints(tmp_path / "nan" / "checkpoints")
    assert done and all((p / "rank-0.pt").is_file() for p in done)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.num_classes=7", "model.num_classes=7 but"),
        ("data.root={missing}", "nowhere/classes.json is missing"),
        ("data.batch_size=500", "cannot fill one batch of 500"),
        ("mask.kernel_size=4", "mask.kernel_size"),
    ],
)
def test_configs_that_cannot_work_fail_before_training(tiny_shards, tmp_path, override, expected):
    override = override.format(missing=tmp_path / "nowhere")
    result = train("pretrain.py", 1, tiny_shards, tmp_path, "name=bad", override, expect_ok=False)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "bad" / "checkpoints").exists()
