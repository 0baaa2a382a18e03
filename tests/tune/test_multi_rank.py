"""A trial as a Ray Train job: two gloo ranks under TorchTrainer, DeepSpeed inside, no launcher;
and, sampled while that search runs, a local Ray that listens on loopback only."""

from __future__ import annotations

import json
import stat
import sys

import pytest
from launching import ROOT, TINY, ListenerSampler, environment, run_tree

pytestmark = pytest.mark.slow


def test_trial_runs_as_two_ray_train_ranks(tiny_shards, tmp_path):
    sampler = ListenerSampler(f"run_dir={tmp_path}")
    sampler.start()
    try:
        run = run_tree(
            [sys.executable, str(ROOT / "launch" / "tune.py"), *TINY, "name=ddp",
             f"run_dir={tmp_path}", f"data.root={tiny_shards}", "schedule.epochs=1",
             "tune.workers_per_trial=2", "tune.cpus_per_worker=0.5", "tune.num_samples=1",
             "tune.scheduler=fifo", "tune.finetune_epochs=1", "tune.num_cpus=2",
             "tune.search_space={mask.grid: {choice: [4]}}"],
            env={**environment(), "OMP_NUM_THREADS": "1"}, timeout=600,
        )
    finally:
        sampler.stop()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "search.json").read_text())
    (trial,) = summary["trials"]
    assert trial["state"] == "complete" and trial["iterations"] == 2
    assert trial["node"]  # the Ray node that ran it
    stages = sorted((tmp_path / "ddp" / "trials").glob("*/*/summary.json"))
    assert [json.loads(p.read_text())["stage"] for p in stages] == ["finetune", "pretrain"]
    for path in stages:
        stage = json.loads(path.read_text())
        assert stage["world_size"] == 2
        assert stage["running_state_rank_spread"] == 0.0

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pgnm").experiment_id])
    assert {r.data.tags["pgnm.stage"] for r in runs} == {"search", "trial", "pretrain", "finetune"}
    assert all(r.info.status == "FINISHED" for r in runs)

    # Every socket the local Ray tree (driver, GCS, raylet, agents, workers, both ranks and
    # their rendezvous store) listened on while the search ran was loopback; the token file
    # is owner-only.
    names = {name for name, _, _ in sampler.seen}
    assert {"gcs_server", "raylet"} <= names, sampler.seen
    assert not sampler.exposed(), f"listening beyond loopback: {sampler.exposed()}"
    token = tmp_path / "ddp" / "ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
