"""Where a process runs: its device and its place in the world, each from one source.

**Device.** ``engine.device`` when it says ``cpu`` or ``cuda``; with ``auto``, DeepSpeed's own
``DS_ACCELERATOR`` when it is set (DeepSpeed honours it, so pgnm must too), else CUDA where a
GPU is visible, else the CPU. An ``engine.device`` that contradicts ``DS_ACCELERATOR`` is
refused naming both, and the choice is exported as ``DS_ACCELERATOR`` before DeepSpeed is
imported, so the engine, the data and DALI all land on the same device.

**World.** What a torch launcher exported (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``: torchrun,
the deepspeed launcher, Ray Train). Without one, Slurm's ``srun`` (``SLURM_PROCID``,
``SLURM_LOCALID``, ``SLURM_STEP_NUM_TASKS``) or Open MPI's ``mpirun``
(``OMPI_COMM_WORLD_RANK``, ``..._LOCAL_RANK``, ``..._SIZE``, ``..._LOCAL_SIZE``) name each
task's place; they do not name a rendezvous, so ``MASTER_ADDR`` and ``MASTER_PORT`` must be
exported, or the run is refused naming them. Otherwise a process is a world of one -- never N
copies that each think they are alone on ``cuda:0`` in the same run folder.

**Loopback.** A rendezvous at a loopback ``MASTER_ADDR`` (the deepspeed launcher's default on
one machine) is a single-machine world, so nothing of it needs another interface: the store
and gloo are bound to loopback (``distributed.setup``). Any other address is the user's, used
as given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from pgnm.errors import ConfigError

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def resolve_device(requested: str, cuda_available: bool,
                   env: Mapping[str, str] = os.environ) -> str:
    """``cpu`` or ``cuda`` (see the module docstring); raises ConfigError on a contradiction."""
    accelerator = env.get("DS_ACCELERATOR") or None
    if accelerator not in (None, "cpu", "cuda"):
        raise ConfigError(f"DS_ACCELERATOR={accelerator}: pgnm trains on 'cpu' or 'cuda'")
    if requested != "auto" and accelerator is not None and accelerator != requested:
        raise ConfigError(
            f"engine.device={requested} but DS_ACCELERATOR={accelerator}: DeepSpeed would place "
            f"the engine on {accelerator} and pgnm the data on {requested}; make them agree "
            "(or unset DS_ACCELERATOR)")
    device = requested if requested != "auto" else (
        accelerator or ("cuda" if cuda_available else "cpu"))
    if device == "cuda" and not cuda_available:
        source = "engine.device" if requested == "cuda" else "DS_ACCELERATOR"
        raise ConfigError(f"{source}=cuda but no CUDA device is visible")
    return device


def _first_count(tasks_per_node: str) -> int:
    """Slurm's ``SLURM_STEP_TASKS_PER_NODE`` (``4(x2),3``): the first node's count."""
    match = re.match(r"\d+", tasks_per_node)
    return int(match.group()) if match else 1


def world_from_cluster(env: Mapping[str, str]) -> dict[str, str] | None:
    """The torch launcher variables for a task started by srun or mpirun without one; None when
    a torch launcher already set them, or when the task is alone."""
    if "RANK" in env:
        return None
    if "OMPI_COMM_WORLD_RANK" in env:
        source = "Open MPI (OMPI_COMM_WORLD_*)"
        rank, size = env["OMPI_COMM_WORLD_RANK"], env.get("OMPI_COMM_WORLD_SIZE", "1")
        local, local_size = (env.get("OMPI_COMM_WORLD_LOCAL_RANK", "0"),
                             env.get("OMPI_COMM_WORLD_LOCAL_SIZE", "1"))
    elif "SLURM_PROCID" in env:  # set per task by srun; an salloc shell has only SLURM_NTASKS
        source = "Slurm (SLURM_PROCID, SLURM_STEP_NUM_TASKS)"
        rank = env["SLURM_PROCID"]
        size = env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1"))
        local = env.get("SLURM_LOCALID", "0")
        local_size = str(_first_count(env.get("SLURM_STEP_TASKS_PER_NODE",
                                              env.get("SLURM_TASKS_PER_NODE", "1"))))
    else:
        return None
    if int(size) <= 1:
        return None
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if missing:
        raise ConfigError(
            f"{source} started {size} tasks (this is rank {rank}) but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: export MASTER_ADDR (the first "
            "node's address) and MASTER_PORT before srun/mpirun, or start the tasks with "
            "torchrun or the deepspeed launcher")
    return {"RANK": rank, "WORLD_SIZE": size, "LOCAL_RANK": local, "LOCAL_WORLD_SIZE": local_size}


def is_loopback_rendezvous(env: Mapping[str, str] = os.environ) -> bool:
    address = env.get("MASTER_ADDR", "")
    return address == "localhost" or address.startswith("127.")


def loopback_interface() -> str | None:
    """The name of the interface that carries 127.0.0.1 (``lo`` on Linux)."""
    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.address == "127.0.0.1" for a in addresses):
            return name
    return None


def local_world_size(env: Mapping[str, str] = os.environ) -> int:
    """Ranks sharing this machine (launcher, cluster or 1)."""
    cluster = world_from_cluster(env) or {}
    # torchrun names it LOCAL_WORLD_SIZE, the deepspeed launcher LOCAL_SIZE
    value = (env.get("LOCAL_WORLD_SIZE") or env.get("LOCAL_SIZE")
             or cluster.get("LOCAL_WORLD_SIZE"))
    return int(value or env.get("WORLD_SIZE", "1"))
