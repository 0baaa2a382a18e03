"""The tracking server dies mid-run: training finishes and no metric is lost."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from launching import ROOT, command, environment

from pgnm.tracking.tracker import FALLBACK_FILE, Tracker, replay_fallback

pytestmark = pytest.mark.slow


def test_server_killed_and_restarted_mid_run(tiny_shards, tmp_path, mlflow_server):
    from mlflow import MlflowClient

    cmd = command(
        "pretrain.py",
        1,
        tiny_shards,
        tmp_path,
        "name=outage",
        "schedule.epochs=3",
        f"tracking.uri={mlflow_server.uri}",
    )
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = tmp_path / "outage" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    mlflow_server.kill()  # mid-run, no warning
    time.sleep(4)
    mlflow_server.start()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "unreachable" in err  # warned once
    assert err.count("unreachable") == 1

    steps = [json.loads(line) for line in metrics.read_text().splitlines()]
    logged_steps = [r["step"] for r in steps if r["kind"] == "step"]
    run_id = json.loads((tmp_path / "outage" / "summary.json").read_text())["mlflow_run_id"]
    client = MlflowClient(mlflow_server.uri)
    history = client.get_metric_history(run_id, "step/loss")
    assert sorted(m.step for m in history) == logged_steps  # every step, none lost
    assert len(client.get_metric_history(run_id, "plain/top1")) == 3
    assert client.get_run(run_id).info.status == "FINISHED"
    assert not (tmp_path / "outage" / FALLBACK_FILE).exists()


def test_unreachable_store_writes_a_fallback_that_replays(tmp_path):
    from launching import free_port
    from mlflow import MlflowClient

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    tracker = Tracker("0123456789abcdef", dead, tmp_path, enabled=True, experiment="pgnm")
    tracker.log_params({"optim.lr": 0.1})
    for step in range(5):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    started = time.monotonic()
    with pytest.warns(UserWarning, match="could not be sent"):
        fallback = tracker.close(timeout=2)
    assert time.monotonic() - started < 30  # bounded, never a hang
    assert fallback == tmp_path / FALLBACK_FILE
    lines = [json.loads(line) for line in Path(fallback).read_text().splitlines()]
    assert sum(line["kind"] == "metric" for line in lines) == 5

    # Replay into a real store: the run did not exist there, so it is created.
    store = f"sqlite:///{tmp_path / 'store.db'}"
    header = json.loads(Path(fallback).read_text().splitlines()[0])
    header["run_id"] = None
    rewritten = tmp_path / "offline.jsonl"
    rewritten.write_text(
        "\n".join([json.dumps(header)] + Path(fallback).read_text().splitlines()[1:])
    )
    run_id = replay_fallback(rewritten, store)
    client = MlflowClient(store)
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [
        1.0,
        0.5,
        1 / 3,
        0.25,
        0.2,
    ]
    assert client.get_run(run_id).data.params["optim.lr"] == "0.1"
