"""Helpers for real training runs: real launchers in subprocesses, on tiny shards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Small enough that a CPU step takes a fraction of a second, big enough to exercise every part.
TINY = [
    "model.arch=resnet10t",
    "policy.hidden_dim=16",
    "mask.grid=8",
    "mask.kernel_size=3",
    "mask.sigma=1.0",
    "data.image_size=32",
    "data.eval_resize=36",
    "data.batch_size=8",
    "data.num_workers=1",
    "data.shuffle_buffer=16",
    "schedule.epochs=2",
    "tracking.log_every=1",
    "optim.lr=0.01",
    "engine.device=cpu",  # and DS_ACCELERATOR=cpu (environment()): the two must agree
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(script: str, ranks: int, shards: Path, run_dir: Path, *overrides: str) -> list[str]:
    args = [
        str(ROOT / "launch" / script),
        *TINY,
        f"data.root={shards}",
        f"run_dir={run_dir}",
        *overrides,
    ]
    if ranks == 1:
        return [sys.executable, *args]
    launcher = Path(sys.executable).with_name("deepspeed")
    return [
        sys.executable,
        str(launcher),
        "--num_gpus",
        str(ranks),
        "--master_port",
        str(free_port()),
        *args,
    ]


def environment() -> dict:
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    # Each run brings its own world, and its own store (mlflow.set_tracking_uri in a test
    # exports MLFLOW_TRACKING_URI, which runs started later would inherit).
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(var, None)
    return env


def run_tree(cmd: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run`` for commands that start process trees (Ray): on a timeout the whole
    tree is killed, so a wedged run cannot slow every later test, and the failure shows the
    end of what it printed."""
    import psutil
    import pytest

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for child in [*psutil.Process(proc.pid).children(recursive=True), proc]:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s: {cmd[:3]}\n{out[-3000:]}\n{err[-5000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def shm_segments() -> set[str]:
    """DeepSpeed's CPU all-reduce segments in /dev/shm (each 66 MB of RAM while it exists)."""
    return {p.name for p in Path("/dev/shm").glob("deepspeed_allreduce_buffer_*")}


def train(
    script: str, ranks: int, shards: Path, run_dir: Path, *overrides: str, expect_ok: bool = True
) -> subprocess.CompletedProcess:
    segments_before = shm_segments()
    result = subprocess.run(
        command(script, ranks, shards, run_dir, *overrides),
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if expect_ok:
        assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    assert shm_segments() <= segments_before, "a run left DeepSpeed's shared memory behind"
    return result


def summary(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name / "summary.json").read_text())


def train_samples(shards: Path) -> int:
    return json.loads((shards / "dataset.json").read_text())["splits"]["train"]["samples"]
