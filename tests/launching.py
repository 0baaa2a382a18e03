"""Helpers for real training runs: real launchers in subprocesses, on tiny shards."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Literal

import torch

from pgnm.train.checkpoint import complete_checkpoints, deepspeed_types, safe_load

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


# Multi-rank runs start under torchrun unless a test asks for DeepSpeed's launcher: both are
# supported, and DeepSpeed's runs two launcher processes that each import deepspeed (and with
# it MLflow), which made a 2-rank tiny run 31 s against torchrun's 18 s. The tests about the
# launcher itself, and a covering share of the others, name "deepspeed".
Launcher = Literal["torchrun", "deepspeed"]


def command(script: str, ranks: int, shards: Path, run_dir: Path, *overrides: str,
            launcher: Launcher = "torchrun") -> list[str]:
    args = [
        str(ROOT / "launch" / script),
        *TINY,
        f"data.root={shards}",
        f"run_dir={run_dir}",
        *overrides,
    ]
    if ranks == 1:
        return [sys.executable, *args]
    program = str(Path(sys.executable).with_name(launcher))
    if launcher == "deepspeed":
        return [sys.executable, program, "--num_gpus", str(ranks),
                "--master_port", str(free_port()), *args]
    return [sys.executable, program, "--nproc-per-node", str(ranks),
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *args]


def rendezvous_port(cmd: list[str]) -> str | None:
    for flag in ("--master_port", "--master-port"):
        if flag in cmd:
            return cmd[cmd.index(flag) + 1]
    return None


def kill_trees(procs: list[subprocess.Popen]) -> None:
    """SIGKILL each launcher and every process under it, no clean-up: torchrun starts its
    workers in sessions of their own, so a process group would miss them."""
    import psutil

    tree = []
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            tree += psutil.Process(proc.pid).children(recursive=True)
    for victim in [*procs, *tree]:
        with suppress(psutil.NoSuchProcess, ProcessLookupError):
            victim.kill()
    for proc in procs:
        proc.communicate()
    psutil.wait_procs(tree, timeout=30)


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


def shm_segments(port: str) -> set[str]:
    """DeepSpeed's CPU all-reduce segments in /dev/shm of the world rendezvousing on ``port``
    (each 66 MB of RAM while it exists); other tests' worlds may hold theirs meanwhile."""
    return {p.name for p in Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*")}


def train(
    script: str, ranks: int, shards: Path, run_dir: Path, *overrides: str, expect_ok: bool = True,
    launcher: Launcher = "torchrun",
) -> subprocess.CompletedProcess:
    cmd = command(script, ranks, shards, run_dir, *overrides, launcher=launcher)
    port = rendezvous_port(cmd)
    result = subprocess.run(cmd, cwd=ROOT, env=environment(), capture_output=True, text=True,
                            timeout=900)
    if expect_ok:
        assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    if port is not None:
        assert not shm_segments(port), "a run left DeepSpeed's shared memory behind"
    return result


def train_together(
    script: str, shards: Path, run_dir: Path, jobs: list[tuple[int, list[str]]]
) -> None:
    """Several runs (ranks, overrides) at once, each of which must succeed: one-rank runs keep
    one of the two cores busy, so two of them side by side take the time of one."""
    procs = [subprocess.Popen(command(script, ranks, shards, run_dir, *overrides), cwd=ROOT,
                              env=environment(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for ranks, overrides in jobs]
    for proc, (_, overrides) in zip(procs, jobs):
        output, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, (overrides, output[-4000:])


def listening_sockets(root: int) -> set[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP and bound UDP socket held by the
    process ``root`` and its descendants, now."""
    import psutil

    found = set()
    try:
        tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for proc in tree:
        try:
            name = proc.name()
            for conn in proc.net_connections(kind="inet"):
                tcp_listen = conn.type == socket.SOCK_STREAM and conn.status == psutil.CONN_LISTEN
                if tcp_listen or (conn.type == socket.SOCK_DGRAM and conn.laddr):
                    found.add((name, conn.laddr.ip, conn.laddr.port))
        except psutil.Error:  # it ended between the listing and the look
            continue
    return found


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # gRPC reports IPv4 as ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def not_loopback(sockets: set[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    return sorted(s for s in sockets if not _loopback(s[1]))


class ListenerSampler(threading.Thread):
    """Samples ``listening_sockets`` of the process whose command line holds ``marker`` (and
    ``script``) until stopped: for trees started by code the test does not hold a handle on."""

    def __init__(self, marker: str, script: str = "tune.py", every_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.marker, self.script, self.every_s = marker, script, every_s
        self.seen: set[tuple[str, str, int]] = set()
        self._stop_event = threading.Event()

    def _root(self) -> int | None:
        import psutil

        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if self.marker in cmdline and self.script in cmdline:
                return proc.pid
        return None

    def run(self) -> None:
        while not self._stop_event.is_set():
            root = self._root()
            if root is not None:
                self.seen |= listening_sockets(root)
            time.sleep(self.every_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)

    def exposed(self) -> list[tuple[str, str, int]]:
        return not_loopback(self.seen)


def train_watching_sockets(
    script: str, ranks: int, shards: Path, run_dir: Path, *overrides: str,
    launcher: Launcher = "torchrun",
) -> set[tuple[str, str, int]]:
    """A run that must succeed, and every socket its process tree listened on meanwhile."""
    proc = subprocess.Popen(command(script, ranks, shards, run_dir, *overrides,
                                    launcher=launcher), cwd=ROOT,
                            env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()))
    reader.start()  # drains the pipe so the run never blocks on a full one
    seen: set[tuple[str, str, int]] = set()
    while proc.poll() is None:
        seen |= listening_sockets(proc.pid)
        time.sleep(0.2)
    reader.join()
    assert proc.returncode == 0, output[0][-4000:]
    return seen


def summary(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name / "summary.json").read_text())


def train_samples(shards: Path) -> int:
    return json.loads((shards / "dataset.json").read_text())["splits"]["train"]["samples"]


def logged_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if '"kind": "step"' in line]


def _tensors(tree: object, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, dict) else (
        enumerate(tree) if isinstance(tree, (list, tuple)) else ())
    found: dict[str, torch.Tensor] = {}
    for key, value in items:
        found.update(_tensors(value, f"{prefix}/{key}"))
    return found


def final_state(out: Path) -> dict[str, torch.Tensor]:
    """Every tensor a run ends with: model, policy (running state included), and the final
    checkpoint (optimizer state, ZeRO partitions, RNG states, loader positions)."""
    state = {}
    for name in ("model/model.pt", "model/policy.pt"):
        state.update(_tensors(safe_load(out / name), name))
    final = complete_checkpoints(out / "checkpoints")[-1]
    for path in sorted(final.rglob("*.pt")):
        tree = safe_load(path, allowed=deepspeed_types())
        state.update(_tensors(tree, str(path.relative_to(final))))
    return state


def kill_after(cmd: list[str], out: Path, kill: str) -> dict:
    """Start ``cmd``; once the checkpoint the cell is about (the first mid-epoch one, or the
    first at an epoch boundary) is complete and the run has logged a step after it, SIGKILL
    the whole process tree. Returns the position of the checkpoint a resume will start from."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, target = time.monotonic() + 600, None
    while True:
        assert proc.poll() is None, "the run ended before the kill"
        assert time.monotonic() < deadline
        if target is None:
            for path in complete_checkpoints(out / "checkpoints"):
                position = json.loads((path / "complete.json").read_text())
                if (position["step_in_epoch"] == 0) == (kill == "boundary"):
                    target = position["global_step"]
                    break
        if target is not None and any(step > target for step in logged_steps(out)):
            break
        time.sleep(0.02)
    kill_trees([proc])
    newest = complete_checkpoints(out / "checkpoints")[-1]
    return json.loads((newest / "complete.json").read_text())
