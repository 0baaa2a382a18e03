"""Two nodes simulated on this machine over loopback, started the ways clusters start jobs.

Each "node" is its own launcher process with its own scratch folder (``TMPDIR``, as Slurm and
most schedulers give a job), and both write checkpoints to one shared run directory:

* ``deepspeed --hostfile H --no_ssh --node_rank i --master_addr 127.0.0.1`` (DeepSpeed's way
  when a scheduler, not ssh, starts one launcher per node), run straight through;
* ``torchrun --nnodes 2 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:P``, killed mid-epoch
  after a checkpoint and started again.

Both end with the policy's running state identical on the two ranks, and the interrupted
torchrun job ends bit for bit where the straight DeepSpeed job does: the launcher decides
nothing about the maths.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from launching import (
    ROOT,
    TINY,
    environment,
    final_state,
    free_port,
    kill_trees,
    logged_steps,
    summary,
)

from pgnm.train.checkpoint import complete_checkpoints

pytestmark = pytest.mark.slow

OVERRIDES = ["schedule.epochs=1", "engine.checkpoint_every=3", "tracking.enabled=false",
             "name=run"]
BIN = Path(sys.executable).parent


def _training_args(shards: Path, run_dir: Path) -> list[str]:
    return [str(ROOT / "launch" / "pretrain.py"), *TINY, f"data.root={shards}",
            f"run_dir={run_dir}", *OVERRIDES]


def _deepspeed_nodes(hostfile: Path, port: int, args: list[str]) -> list[list[str]]:
    return [[sys.executable, str(BIN / "deepspeed"), "--hostfile", str(hostfile), "--no_ssh",
             "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", str(port),
             *args] for node in range(2)]


def _torchrun_nodes(port: int, job: str, args: list[str]) -> list[list[str]]:
    return [[sys.executable, str(BIN / "torchrun"), "--nnodes", "2", "--nproc-per-node", "1",
             "--node_rank", str(node), "--rdzv-backend", "c10d", "--rdzv-id", job,
             "--rdzv-endpoint", f"127.0.0.1:{port}", *args] for node in range(2)]


def _start(commands: list[list[str]], scratch: list[Path]) -> list[subprocess.Popen]:
    procs = []
    for cmd, tmp in zip(commands, scratch, strict=True):
        tmp.mkdir(parents=True, exist_ok=True)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env={**environment(), "TMPDIR": str(tmp)},
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, start_new_session=True))
    return procs


def _finish(procs: list[subprocess.Popen], timeout: float = 600) -> list[str]:
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out[-4000:]
        outputs.append(out)
    return outputs


def _kill_after_a_mid_epoch_checkpoint(procs: list[subprocess.Popen], out: Path) -> int:
    """SIGKILL every node's launcher and ranks once a mid-epoch checkpoint is complete and a
    later step is logged; returns that checkpoint's step."""
    deadline, target = time.monotonic() + 600, None
    while target is None or not any(step > target for step in logged_steps(out)):
        assert all(p.poll() is None for p in procs), "a node ended before the kill"
        assert time.monotonic() < deadline
        for path in complete_checkpoints(out / "checkpoints"):
            position = json.loads((path / "complete.json").read_text())
            if position["step_in_epoch"] > 0:
                target = position["global_step"]
        time.sleep(0.02)
    kill_trees(procs)
    return target


def test_two_nodes_by_deepspeed_and_by_torchrun_agree_and_resume_exactly(tiny_shards, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node0 slots=1\nnode1 slots=1\n")
    straight_dir, interrupted_dir = tmp_path / "deepspeed", tmp_path / "torchrun"
    straight_scratch = [tmp_path / f"deepspeed-node{n}" for n in range(2)]
    scratch = [tmp_path / f"torchrun-node{n}" for n in range(2)]
    straight = _start(_deepspeed_nodes(hostfile, free_port(),
                                       _training_args(tiny_shards, straight_dir)),
                      straight_scratch)
    args = _training_args(tiny_shards, interrupted_dir)
    out = interrupted_dir / "run"
    killed_at = _kill_after_a_mid_epoch_checkpoint(
        _start(_torchrun_nodes(free_port(), "first", args), scratch), out)
    assert not (out / "summary.json").exists()
    resumed = _finish(_start(_torchrun_nodes(free_port(), "second", args), scratch))
    _finish(straight)

    assert any("resumed from" in text and f"step {killed_at})" in text for text in resumed)
    for run_dir, node_scratch in ((straight_dir, straight_scratch), (interrupted_dir, scratch)):
        result = summary(run_dir, "run")
        assert result["world_size"] == 2
        assert result["running_state_rank_spread"] == 0.0
        nodes = json.loads((run_dir / "run" / "nodes.json").read_text())
        assert [n["rank"] for n in nodes] == [0, 1]
        # each rank used its own node's scratch folder, whichever node c10d made rank 0
        assert sorted(n["scratch"] for n in nodes) == sorted(str(p.resolve()) for p in node_scratch)
        # ...and both ranks' parts of every checkpoint reached the shared run directory
        for path in complete_checkpoints(run_dir / "run" / "checkpoints"):
            assert {p.name for p in path.glob("rank-*.pt")} == {"rank-0.pt", "rank-1.pt"}
    expected, got = final_state(straight_dir / "run"), final_state(out)
    assert expected.keys() == got.keys()
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []


def test_node_local_run_directories_are_refused_before_training(tiny_shards, tmp_path):
    """Two nodes whose run_dir is not one shared folder (simulated: each its own path) stop
    together before the first step, naming the folder and the rank that cannot see it."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node0 slots=1\nnode1 slots=1\n")
    port = free_port()
    commands = [_deepspeed_nodes(hostfile, port, _training_args(tiny_shards, tmp_path / f"own{n}"))
                for n in range(2)]
    commands = [commands[n][n] for n in range(2)]  # node n with its own run_dir
    procs = _start(commands, [tmp_path / f"node{n}" for n in range(2)])
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert all(proc.returncode != 0 for proc in procs), outputs[0][-2000:]
    assert "rank 1 on" in outputs[0] and "cannot see the checkpoint folder" in outputs[0]
    assert str(tmp_path / "own0" / "run" / "checkpoints") in outputs[0]
    assert "Traceback" not in outputs[0]
    for n in range(2):
        assert not logged_steps(tmp_path / f"own{n}" / "run")
