"""Exact resume across the configuration space: SIGKILL of the whole job, ``resume=auto``, and
everything an uninterrupted run of the same command ends with, bit for bit.

The space is objective x loader x data.num_workers x ranks x grad_accum_steps x ZeRO stage x
where the kill lands: seven two-level factors, 128 runs as a full product. ``CELLS`` is a
strength-2 covering array of it: 6 cells in which every pair of levels of every two factors
occurs at least once (its columns are distinct weight-3 binary vectors of length 6 with a 0 in
the first row, so any two share a 1, each has a 1 where the other has a 0, and the first row
gives 0-0). Cell 0 is the drill that failed before the fix: paper objective, webdataset
loader with 2 workers, 2 ranks, killed mid-epoch. The accumulation cells use a batch size that
leaves an odd number of batches per rank, so without whole accumulation windows per epoch a
window would straddle the epoch's checkpoint. MLflow's history is compared in two cells, one
with each rank count (its de-duplication does not depend on the loader or the objective); the
others run without tracking, which halves their start-up.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from launching import ROOT, command, environment, final_state, kill_after, logged_steps, train

from pgnm.errors import CheckpointError
from pgnm.tracking.store import mlflow_client
from pgnm.train.checkpoint import (
    complete_checkpoints,
    resolve_resume,
)

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Cell:
    objective: str
    loader: str
    workers: int
    ranks: int
    accum: int
    zero: int
    kill: str  # "mid": resume inside an epoch; "boundary": at the start of the next one
    mlflow: bool = False  # also compare MLflow's metric history (rank 0 logs it, with 1 or 2)
    launcher: str = "torchrun"  # of the 2-rank cells; the drill keeps DeepSpeed's

    @property
    def batch_size(self) -> int:  # 129 training samples: 25 batches of 5 on 1 rank, 9 of 7 on 2
        return 8 if self.accum == 1 else (5 if self.ranks == 1 else 7)

    def overrides(self) -> list[str]:
        return [f"objective.name={self.objective}", f"data.loader={self.loader}",
                f"data.num_workers={self.workers}", f"optim.grad_accum_steps={self.accum}",
                f"engine.zero_stage={self.zero}", f"data.batch_size={self.batch_size}",
                f"engine.checkpoint_every={3 if self.kill == 'mid' else 0}",
                "schedule.epochs=2", "tracking.log_model=false", "name=run",
                f"tracking.enabled={str(self.mlflow).lower()}"]


CELLS = [
    Cell("paper", "webdataset", 2, 2, 1, 0, "mid", mlflow=True, launcher="deepspeed"),
    Cell("paper", "dali", 0, 2, 2, 2, "boundary"),
    Cell("paper", "dali", 2, 1, 2, 0, "mid", mlflow=True),
    Cell("reinforce", "webdataset", 0, 1, 1, 0, "boundary"),
    Cell("reinforce", "webdataset", 2, 1, 2, 2, "boundary"),
    Cell("reinforce", "dali", 0, 2, 1, 2, "mid"),
]
TIMING = ("train/img_s", "step/train/img_s")  # wall-clock figures: the one thing allowed to differ


def _records(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def _mlflow_history(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    client = mlflow_client(f"sqlite:///{run_dir / 'mlflow' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("pgnm").experiment_id])
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics if key not in TIMING}


def _cell_id(cell: Cell) -> str:
    return "-".join(str(v) for k, v in vars(cell).items()
                    if k != "mlflow" and (k != "launcher" or cell.ranks > 1))


@pytest.mark.parametrize("cell", CELLS, ids=_cell_id)
def test_sigkill_and_resume_is_bit_identical(tiny_shards, tmp_path, cell):
    straight_dir, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    overrides = cell.overrides()
    straight = subprocess.Popen(  # alongside the interrupted run: the cores are mostly idle
        command("pretrain.py", cell.ranks, tiny_shards, straight_dir, *overrides,
                launcher=cell.launcher), cwd=ROOT,
        env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = interrupted / "run"
    position = kill_after(
        command("pretrain.py", cell.ranks, tiny_shards, interrupted, *overrides,
                launcher=cell.launcher), out, cell.kill)
    assert not (out / "summary.json").exists()
    assert (position["step_in_epoch"] == 0) == (cell.kill == "boundary")
    assert max(logged_steps(out)) > position["global_step"]  # logged before the kill
    resumed = train("pretrain.py", cell.ranks, tiny_shards, interrupted, *overrides,
                    launcher=cell.launcher)
    stdout, stderr = straight.communicate(timeout=900)
    assert straight.returncode == 0, (stdout[-2000:], stderr[-4000:])

    assert f"(epoch {position['epoch']}, step {position['global_step']})" in resumed.stdout
    expected, got = final_state(straight_dir / "run"), final_state(out)
    assert expected.keys() == got.keys()
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []
    assert _records(straight_dir / "run") == _records(out)  # every record once, in order
    if cell.mlflow:
        history = _mlflow_history(interrupted)
        assert history == _mlflow_history(straight_dir)
        assert all(len({s for s, _ in values}) == len(values) for values in history.values())


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
    with pytest.raises(CheckpointError, match="complete.json missing"):
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
        "tracking.enabled=false",
        expect_ok=False,
        launcher="deepspeed",
    )
    assert result.returncode != 0
    message = result.stderr
    assert "non-finite value at step" in message and "on rank" in message
    assert "error (pretrain, rank" in message
    done = complete_checkpoints(tmp_path / "nan" / "checkpoints")
    assert done and all((p / "rank-0.pt").is_file() for p in done)


BROKEN = [  # (override, what the one-line error must say)
    ("model.num_classes=7", "model.num_classes=7 but"),
    ("data.root={missing}", "nowhere/classes.json is missing"),
    ("data.batch_size=500", "cannot fill one batch of 500"),
    ("mask.kernel_size=4", "mask.kernel_size"),
]


def test_configs_that_cannot_work_fail_before_training(tiny_shards, tmp_path):
    """Each broken command on its own, all four at once: each costs a launch's start-up and
    nothing more, so side by side they take the time of two."""
    procs = []
    for i, (override, _) in enumerate(BROKEN):
        override = override.format(missing=tmp_path / "nowhere")
        cmd = command("pretrain.py", 1, tiny_shards, tmp_path / f"case{i}", "name=bad", override)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=environment(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for i, (proc, (override, expected)) in enumerate(zip(procs, BROKEN)):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (override, err[-3000:])
        assert expected in err, (override, err[-3000:])
        assert "Traceback" not in err, override
        assert not (tmp_path / f"case{i}" / "bad" / "checkpoints").exists(), override
