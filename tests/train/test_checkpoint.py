"""Checkpoints load without running code: a planted pickle is refused, naming the file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from launching import ROOT, environment, train

from pgnm.errors import CheckpointError
from pgnm.train.checkpoint import complete_checkpoints, rng_state, safe_load, set_rng_state

QUICK = ["schedule.max_steps=2", "engine.checkpoint_every=1", "tracking.enabled=false"]


class _RunsCode:
    """Unpickling this calls ``os.system``: what a malicious checkpoint file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> None:
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, path)


def test_rank_state_round_trips_through_a_weights_only_load(tmp_path):
    torch.manual_seed(3)
    state = rng_state()
    torch.save({"loader": {"epoch": 1, "step": 4, "dali": "serialised"}, "rng": state},
               tmp_path / "rank-0.pt")
    expected = torch.rand(3)
    loaded = safe_load(tmp_path / "rank-0.pt")
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), expected) and loaded["loader"]["dali"] == "serialised"


def test_a_planted_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    plant(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refusing to load it.*posix\.system"):
        safe_load(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.fixture(scope="module")
def trained(tiny_shards, tmp_path_factory) -> Path:
    """One short run with checkpoints; each test plants its pickle in a copy."""
    root = tmp_path_factory.mktemp("trained")
    train("pretrain.py", 1, tiny_shards, root, "name=run", *QUICK)
    return root / "run"


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["rank-0.pt", "engine/mp_rank_00_model_states.pt"])
def test_resume_refuses_a_planted_pickle_naming_the_file(tiny_shards, trained, tmp_path, victim):
    shutil.copytree(trained, tmp_path / "run")
    newest = complete_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    marker = tmp_path / "ran"
    plant(newest / victim, marker)
    result = train("pretrain.py", 1, tiny_shards, tmp_path, "name=run", *QUICK,
                   "schedule.max_steps=3", expect_ok=False)
    assert result.returncode == 2
    assert f"{newest / victim}: refusing to load it" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_a_search_trial_refuses_a_planted_pickle_in_its_tune_checkpoint(tiny_shards, trained,
                                                                        tmp_path):
    """A retried trial copies its trainer checkpoint out of Tune's storage and resumes from
    it (pgnm.tune.trial); the copy is read as safely as any other checkpoint."""
    source = complete_checkpoints(trained / "checkpoints")[-1]
    tune_checkpoint = tmp_path / "tune-checkpoint"
    shutil.copytree(source, tune_checkpoint / source.name)
    (tune_checkpoint / "trial.json").write_text(
        f'{{"stage": "pretrain", "checkpoint": "{source.name}"}}')
    marker = tmp_path / "ran"
    plant(tune_checkpoint / source.name / "rank-0.pt", marker)
    script = f"""
import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "tests")!r})
from launching import TINY
from pgnm.config import load_config
from pgnm.errors import reported_as_one_line
from pgnm.tune.trial import SearchContext, TrialRunner
base = load_config(overrides=[*TINY, *{QUICK!r}, "data.root={tiny_shards}",
                             "tune.finetune_epochs=0"])
context = SearchContext(base, {str(tmp_path / "search")!r}, None, None, None)
runner = TrialRunner(context, {{}}, "t0", {str(tune_checkpoint)!r},
                     report=lambda *a, **k: None, make_checkpoint=str)
with reported_as_one_line("trial"):
    runner.run()
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "rank-0.pt: refusing to load it" in result.stderr
    assert "restored" in result.stderr  # the copy the trial made, inside its own folder
    assert not marker.exists()
