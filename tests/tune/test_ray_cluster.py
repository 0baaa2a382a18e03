"""A search on a real two-node Ray cluster (``ray start`` head + worker, token auth): trials
land on both nodes, checkpoints go to ``tune.storage``, and a driver killed mid-search is
continued by the same command without running its finished trial again."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from launching import ROOT, TINY, environment, free_port, run_tree

from pgnm.atomic import create_private
from pgnm.config import dump_config, load_config, with_overrides

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))


def _start_node(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    """A ``ray start --block`` node in its own session, back once Ray says it runs."""
    temp_dir = tempfile.mkdtemp(prefix="pgnm-")  # short: Ray's socket paths stop at 107 bytes
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [RAY, "start", *args, "--num-cpus", "1", "--object-store-memory", "100000000",
             "--temp-dir", temp_dir, "--disable-usage-stats", "--block"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    proc.temp_dir = temp_dir
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    return proc


def _stop_nodes(nodes: list[subprocess.Popen]) -> None:
    """Every process of the cluster, not just those ``ray stop`` would find for this user."""
    tree = []
    for node in nodes:
        try:
            tree += [psutil.Process(node.pid), *psutil.Process(node.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for node in nodes:
        if node.poll() is None:
            node.terminate()  # ray start --block stops its node's processes on SIGTERM
    _, alive = psutil.wait_procs(tree, timeout=20)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
    for node in nodes:
        with_pgid = [p for p in psutil.process_iter() if _pgid(p) == node.pid]
        for proc in with_pgid:  # a worker the raylet started and then lost track of
            proc.kill()
        shutil.rmtree(node.temp_dir, ignore_errors=True)


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


@pytest.fixture
def cluster(tmp_path):
    """(address, env): a head and a worker node of one CPU each, joined with a token."""
    token = tmp_path / "auth_token"
    create_private(token, secrets.token_hex(32))
    env = {**environment(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = free_port()
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_start_node(["--head", "--node-ip-address", "127.0.0.1", "--port",
                                  str(port), "--include-dashboard", "false"],
                                 tmp_path / "head.log", env))
        nodes.append(_start_node(["--address", f"127.0.0.1:{port}", "--node-ip-address",
                                  "127.0.0.1"], tmp_path / "worker.log", env))
        yield f"127.0.0.1:{port}", env
    finally:
        _stop_nodes(nodes)


def _config(shards: Path, run_dir: Path) -> Path:
    """Two trials, one CPU each on two one-CPU nodes: one short, one long enough to be
    killed in the middle of once the short one has finished."""
    config = load_config(overrides=[*TINY, "name=cluster", f"run_dir={run_dir}",
                                    f"data.root={shards}"])
    config = with_overrides(config, {
        "tune.num_samples": 1, "tune.max_concurrent": 2, "tune.scheduler": "fifo",
        "tune.finetune_epochs": 0, "tune.metric": "pretrain/train_loss", "tune.mode": "min",
        "tune.cpus_per_worker": 1, "tune.storage": str(run_dir / "shared"),
        "tune.search_space": {"schedule.epochs": {"grid": [1, 6]}},
    })
    path = run_dir / "cluster.yaml"
    path.write_text(dump_config(config))
    return path


def _results(experiment: Path) -> dict[int, list[dict]]:
    """Each trial's reported results so far, by its number of epochs."""
    found = {}
    for path in experiment.glob("*/result.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if lines:
            found[lines[0]["config"]["schedule.epochs"]] = lines
    return found


def _recorded(experiment: Path) -> dict[str, tuple[str, int]]:
    """What a restore would read: each trial's status and last recorded iteration."""
    found = {}
    for path in experiment.glob("experiment_state-*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):  # being replaced right now
            continue
        for trial_json, metadata_json in state.get("trial_data", []):
            trial, metadata = json.loads(trial_json), json.loads(metadata_json)
            iteration = (metadata.get("last_result") or {}).get("training_iteration", 0)
            found[trial["trial_id"]] = (trial.get("status"), iteration)
    return found


def test_search_spans_two_nodes_and_continues_after_the_driver_dies(tiny_shards, tmp_path,
                                                                     cluster):
    address, env = cluster
    env = {**env, "OMP_NUM_THREADS": "1", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    command = [sys.executable, str(ROOT / "launch" / "tune.py"), "--config",
               str(_config(tiny_shards, tmp_path)), f"tune.address={address}"]
    experiment = tmp_path / "shared" / "cluster"
    started = time.monotonic()

    # First driver: SIGKILLed once the experiment state records the short trial as finished
    # and the long one's first checkpointed epoch (the state is saved every second here).
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        while True:
            assert driver.poll() is None, driver.stdout.read()[-4000:]
            assert time.monotonic() - started < 240, "the short trial never finished"
            results = _results(experiment)
            short, long = results.get(1, []), results.get(6, [])
            state = _recorded(experiment)
            if (short and long and short[-1].get("done_stages")
                    and state.get(short[0]["trial_id"], ("", 0))[0] == "TERMINATED"
                    and state.get(long[0]["trial_id"], ("", 0))[1] >= 1):
                break
            time.sleep(0.2)
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()
    before = _results(experiment)
    assert not before[6][-1].get("done_stages"), "the long trial finished before the kill"
    # The two trials ran at once, one on each node.
    assert before[1][0]["node_id"] != before[6][0]["node_id"], before

    # Same command again: the search continues rather than starting over.
    run = run_tree(command, env=env, timeout=300)
    print(f"cluster search took {time.monotonic() - started:.0f} s")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "continuing the interrupted search" in run.stdout
    after = _results(experiment)
    assert after[1] == before[1], "the finished trial ran again"
    assert after[6][-1]["done_stages"] and after[6][-1]["training_iteration"] == 6
    assert after[6][-1]["retried"]  # picked up from its checkpoint, not from scratch
    summary = json.loads((tmp_path / "cluster" / "search.json").read_text())
    assert sorted(t["iterations"] for t in summary["trials"]) == [1, 6]
    assert all(t["state"] == "complete" for t in summary["trials"])
    assert summary["trials"][0]["node"] and summary["trials"][1]["node"]

    # MLflow: still one search run, one trial run per trial, all closed.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pgnm").experiment_id])
    assert len([r for r in runs if r.data.tags.get("pgnm.stage") == "search"]) == 1
    trials = [r for r in runs if r.data.tags.get("pgnm.stage") == "trial"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
