"""A real 4-trial ASHA search on 2 CPUs: early stopping, a crashed trial retried from its
checkpoint, every trial a closed MLflow child run, and the best config trained again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from launching import ROOT, TINY, environment, run_tree

from pgnm.config import dump_config, load_config, with_overrides

pytestmark = pytest.mark.slow


def _search_config(shards: Path, run_dir: Path) -> Path:
    config = load_config(overrides=[*TINY, "name=search", f"run_dir={run_dir}",
                                    f"data.root={shards}"])
    config = with_overrides(config, {
        "tune.num_samples": 1, "tune.max_concurrent": 2, "tune.grace_period": 1,
        "tune.reduction_factor": 2, "tune.max_failures": 1, "tune.finetune_epochs": 1,
        "tune.num_cpus": 2, "tune.finetune_overrides": {"optim.lr": 0.01},
        # Ranked by the training loss, which separates the trials by far more than the tiny
        # validation split's macro F1 does (one image there moves F1 by 0.1): two trials that
        # barely move from their start, then two whose rate is too high for the tiny model
        # (stage-1 loss about 8 against 13-24, unclipped). Only two run at once, so the bad
        # pair reaches the first rung after the good pair and ASHA has someone to stop.
        "tune.metric": "finetune/train_loss", "tune.mode": "min",
        "tune.search_space": {"optim.lr": {"grid": [1.0e-6, 1.0e-6, 0.02, 0.02]},
                              "mask.grid": {"choice": [4, 8]}},
    })
    path = run_dir / "search.yaml"
    path.write_text(dump_config(config))
    return path


def _kill_a_trial_after_its_first_checkpoint(tune_dir: Path, killed: list, stop: threading.Event):
    """SIGKILL the worker process of a trial whose first checkpointed result the driver has
    recorded (result.json is written after the checkpoint is registered). Every such trial is a
    candidate: the first one to checkpoint may already be gone (ASHA can stop it at its first
    rung), so the search moves on to whichever candidate still has a live worker."""
    while not stop.is_set():
        candidates = {c.parent.name for c in tune_dir.glob("*/checkpoint_000000")
                      if (c.parent / "result.json").exists()
                      and (c.parent / "result.json").read_text()}
        if candidates:
            for pid in subprocess.run(["pgrep", "-f", "ray::ImplicitFunc.train"],
                                      capture_output=True, text=True).stdout.split():
                try:
                    cwd = os.readlink(f"/proc/{pid}/cwd")
                except OSError:
                    continue
                trial_dir = next((c for c in sorted(candidates) if cwd.endswith(c)), None)
                if trial_dir is not None:
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(trial_dir)
                    return
        time.sleep(0.2)


def test_asha_search_end_to_end(tiny_shards, tmp_path):
    config_path = _search_config(tiny_shards, tmp_path)
    out = tmp_path / "search"
    killed: list[str] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_trial_after_its_first_checkpoint,
                              args=(out / "tune", killed, stop), daemon=True)
    env = {**environment(), "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    killer.start()
    try:
        run = run_tree([sys.executable, str(ROOT / "launch" / "tune.py"),
                        "--config", str(config_path)], env=env, timeout=900)
    finally:
        stop.set()
    print(f"search took {time.monotonic() - started:.0f} s")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    summary = json.loads((out / "search.json").read_text())
    trials = summary["trials"]
    assert len(trials) == 4
    states = [t["state"] for t in trials]
    assert "stopped early" in states, states
    assert "error" not in states, states
    assert killed, "the crash was never injected"
    retried = [t for t in trials if killed[0].startswith(f"single_rank_trial_{t['trial']}")]
    assert retried and retried[0]["retried"], trials
    # It resumed from the copied checkpoint rather than starting over.
    assert any((out / "trials" / retried[0]["trial"] / "restored").rglob("complete.json"))
    for trial in trials:
        assert trial["iterations"] <= 3  # 2 stage-1 epochs + 1 fine-tuning epoch
        if trial["state"] == "complete":
            assert trial["iterations"] == 3
            assert 0.0 < trial["finetune/train_loss"] < 100.0
    best = summary["best"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert best["finetune/train_loss"] == min(t["finetune/train_loss"] for t in complete)
    for name in ("trials.csv", "trials.md", "search.png", "best.yaml"):
        assert (out / name).stat().st_size > 0
    assert "Traceback" not in run.stderr.split("Trial task failed")[0]

    # MLflow: a search run, one closed child run per trial, nothing left RUNNING.
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(store, registry_uri=store)
    exp = client.get_experiment_by_name("pgnm").experiment_id
    all_runs = client.search_runs([exp])
    assert not [r.info.run_name for r in all_runs if r.info.status == "RUNNING"]
    (search,) = [r for r in all_runs if r.data.tags.get("pgnm.stage") == "search"]
    assert search.info.status == "FINISHED"
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == search.info.run_id]
    assert sorted(r.data.tags["pgnm.tune.trial_id"] for r in children) == sorted(
        t["trial"] for t in trials)
    assert all(r.info.status == "FINISHED" for r in children)
    stopped = {t["trial"] for t in trials if t["state"] == "stopped early"}
    assert stopped == {r.data.tags["pgnm.tune.trial_id"] for r in children
                       if r.data.tags.get("pgnm.tune.stopped_early") == "true"}
    # The best trial's heated model is registered, pointing back at the search.
    registered = summary["registered"]
    version = client.get_model_version(registered["registered_model"], registered["version"])
    assert version.tags["pgnm.tune.search_run_id"] == search.info.run_id
    assert version.tags["pgnm.tune.trial_id"] == best["trial"]
    assert client.get_registered_model(registered["registered_model"]).aliases["current"]

    # The exported best config trains unchanged through the stage-1 launcher.
    best_config = load_config(out / "best.yaml")
    assert best_config.optim.lr == best["params"]["optim.lr"]
    assert best_config.mask.grid == best["params"]["mask.grid"]
    again = subprocess.run([sys.executable, str(ROOT / "launch" / "pretrain.py"),
                            "--config", str(out / "best.yaml")],
                           env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    trained = json.loads((tmp_path / "search-best" / "summary.json").read_text())
    assert trained["stage"] == "pretrain" and trained["global_step"] > 0


def test_processes_that_outlive_ray_shutdown_are_killed_with_a_warning():
    import psutil

    from pgnm.tune.search import _stop_leftovers

    stuck = subprocess.Popen([sys.executable, "-c",  # ignores SIGTERM, as a wedged worker would
                              "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                              " print(flush=True); time.sleep(600)"], stdout=subprocess.PIPE)
    stuck.stdout.readline()
    with pytest.warns(UserWarning, match=r"Ray left 1 process\(es\) running .*killed them"):
        _stop_leftovers([psutil.Process(stuck.pid)], grace_s=0.5)
    assert stuck.wait(timeout=10) == -signal.SIGKILL
