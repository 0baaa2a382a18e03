"""One source of truth for the device; ranks from srun / mpirun when no torch launcher ran."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from launching import ROOT, TINY, environment, free_port, summary

from pgnm.errors import ConfigError
from pgnm.train.cluster import (
    is_loopback_rendezvous,
    local_world_size,
    resolve_device,
    world_from_cluster,
)
from pgnm.train.distributed import _init_on_loopback, use_node_scratch


@pytest.mark.parametrize(
    ("requested", "accelerator", "cuda", "expected"),
    [
        ("auto", None, False, "cpu"),
        ("auto", None, True, "cuda"),
        ("auto", "cpu", True, "cpu"),  # DeepSpeed honours DS_ACCELERATOR, so pgnm does too
        ("auto", "cuda", True, "cuda"),
        ("cpu", None, True, "cpu"),
        ("cpu", "cpu", True, "cpu"),
        ("cuda", "cuda", True, "cuda"),
    ],
)
def test_the_device_comes_from_one_place(requested, accelerator, cuda, expected):
    env = {"DS_ACCELERATOR": accelerator} if accelerator else {}
    assert resolve_device(requested, cuda, env) == expected


@pytest.mark.parametrize(
    ("requested", "accelerator", "cuda", "message"),
    [
        ("cuda", "cpu", True, "engine.device=cuda but DS_ACCELERATOR=cpu"),
        ("cpu", "cuda", True, "engine.device=cpu but DS_ACCELERATOR=cuda"),
        ("cuda", None, False, "engine.device=cuda but no CUDA device is visible"),
        ("auto", "cuda", False, "DS_ACCELERATOR=cuda but no CUDA device is visible"),
        ("auto", "xpu", True, "DS_ACCELERATOR=xpu: pgnm trains on 'cpu' or 'cuda'"),
    ],
)
def test_contradicting_device_settings_are_refused_by_name(requested, accelerator, cuda, message):
    env = {"DS_ACCELERATOR": accelerator} if accelerator else {}
    with pytest.raises(ConfigError, match=message):
        resolve_device(requested, cuda, env)


RENDEZVOUS = {"MASTER_ADDR": "node-a", "MASTER_PORT": "29500"}


def test_srun_tasks_become_ranks():
    env = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_STEP_NUM_TASKS": "8",
           "SLURM_STEP_TASKS_PER_NODE": "2(x4)", "SLURM_NTASKS": "16", **RENDEZVOUS}
    assert world_from_cluster(env) == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                                       "LOCAL_WORLD_SIZE": "2"}
    assert local_world_size(env) == 2


def test_mpirun_ranks_become_ranks():
    env = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
           "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2", **RENDEZVOUS}
    assert world_from_cluster(env) == {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                                       "LOCAL_WORLD_SIZE": "2"}


@pytest.mark.parametrize(
    "env",
    [
        {"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "8"},
        {"SLURM_NTASKS": "4", "SLURM_JOB_ID": "7"},  # an salloc shell: no task of srun's
        {"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"},
        {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1"},
        {},
    ],
    ids=["torch launcher wins", "salloc shell", "one srun task", "one mpi rank", "plain"],
)
def test_otherwise_the_launcher_or_a_world_of_one(env):
    assert world_from_cluster(env) is None


@pytest.mark.parametrize("missing", [("MASTER_ADDR",), ("MASTER_PORT",), RENDEZVOUS])
def test_tasks_without_a_rendezvous_are_refused_naming_it(missing):
    env = {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "4", **RENDEZVOUS}
    for name in missing:
        env.pop(name)
    with pytest.raises(ConfigError, match=f"started 4 tasks .*{' and '.join(missing)}"):
        world_from_cluster(env)


@pytest.mark.slow
def test_two_srun_style_tasks_train_one_model_together(tiny_shards, tmp_path):
    """Two plain python processes carrying only Slurm's per-task variables (what srun sets)
    form one world of two: one run, one model, the running state identical on both."""
    port = str(free_port())
    cmd = [sys.executable, str(ROOT / "launch" / "pretrain.py"), *TINY, f"data.root={tiny_shards}",
           f"run_dir={tmp_path}", "name=srun", "tracking.enabled=false", "schedule.epochs=1",
           "objective.name=reinforce", "engine.device=cpu"]
    tasks = []
    for rank in range(2):
        env = dict(environment(), SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank),
                   SLURM_STEP_NUM_TASKS="2", SLURM_STEP_TASKS_PER_NODE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        tasks.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for task in tasks:
        out, err = task.communicate(timeout=600)
        assert task.returncode == 0, err[-3000:]
    result = summary(tmp_path, "srun")
    assert result["world_size"] == 2 and result["running_state_rank_spread"] == 0.0


def test_the_deepspeed_launchers_local_size_counts_ranks_on_this_node():
    # two nodes of one rank each: each rank has its machine to itself
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_SIZE": "1"}
    assert local_world_size(env) == 1


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.0.1.1", True), ("localhost", True),
    ("10.0.0.3", False), ("node0", False), ("", False)])
def test_only_a_loopback_rendezvous_is_bound_to_loopback(address, loopback):
    assert is_loopback_rendezvous({"MASTER_ADDR": address}) is loopback


def test_a_rendezvous_port_already_taken_is_refused_naming_it(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for name, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                            "MASTER_PORT": str(port)}.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=f"MASTER_PORT={port}: cannot listen on 127.0.0.1"):
            _init_on_loopback(use_cuda=False)


def test_node_scratch_becomes_the_temp_dir_of_the_process_and_its_children(tmp_path,
                                                                          monkeypatch):
    # Set (not deleted) first, so that monkeypatch records the original state and restores
    # it: use_node_scratch writes os.environ itself, and a TMPDIR left pointing here would
    # send every later test's temporary files (Ray's sockets among them) under tmp_path.
    for name in ("TMPDIR", "TRITON_CACHE_DIR"):
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    monkeypatch.setattr(tempfile, "tempdir", None)
    scratch = use_node_scratch(str(tmp_path / "node-local"))
    assert scratch == str((tmp_path / "node-local").resolve()) == tempfile.gettempdir()
    assert os.environ["TMPDIR"] == scratch
    assert os.environ["TRITON_CACHE_DIR"] == str(Path(scratch) / "triton")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # null: the node's own TMPDIR, as given
    monkeypatch.delenv("TRITON_CACHE_DIR")
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert use_node_scratch(None) == str(tmp_path)
    assert "TRITON_CACHE_DIR" not in os.environ
