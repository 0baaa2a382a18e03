"""Process-group plumbing: one code path for the deepspeed launcher, torchrun and plain python.

Launchers export RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; plain ``python``
exports nothing, and DeepSpeed then tries MPI discovery and fails. ``setup`` makes that a
world of one on an in-memory store (no port), picks the accelerator (CUDA if asked for and
present, else the CPU with gloo), and lets DeepSpeed create the process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from pgnm.errors import ConfigError, PeerFailed, PgnmError


@dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def dali_device_id(self) -> int | None:
        return self.local_rank if self.device.type == "cuda" else None


def setup(device: str = "auto") -> World:
    """Initialise (or join) the process group; safe to call once per process."""
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("engine.device=cuda but no CUDA device is visible")
    if not use_cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    # Plain `python launch/...` or a one-rank Tune trial: a world of one. (Ray Train creates
    # the group and the environment itself.)
    alone = "RANK" not in os.environ and not dist.is_initialized()
    if alone:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if alone:
        # An in-memory store: no port to pick, so concurrent trials on one node cannot collide.
        dist.init_process_group("nccl" if use_cuda else "gloo", store=dist.HashStore(),
                                rank=0, world_size=1)
    import deepspeed

    # Creates the group from the launcher's environment, or adopts the one that exists (ours
    # above, or Ray Train's); a no-op when DeepSpeed has already done either.
    deepspeed.init_distributed(dist_backend="nccl" if use_cuda else "gloo")
    if not use_cuda and dist.get_world_size() > 1:
        _unlink_shm_allreduce_segment(dist.get_rank())
    return World(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=torch.device("cuda", local_rank) if use_cuda else torch.device("cpu"),
    )


def _unlink_shm_allreduce_segment(rank: int) -> None:
    """Drop the name of DeepSpeed's CPU all-reduce segment once every rank has mapped it.

    DeepSpeed's CPU ``shm_comm`` op gives each rank a 66 MB segment in /dev/shm and never
    unlinks it, so every multi-rank CPU run left 66 MB per rank in RAM until reboot (a test
    suite filled /dev/shm and Ray's OOM killer started killing workers). ``init_distributed``
    returns only after this rank has mapped every peer's segment, so after a barrier no rank
    opens a segment by name again; the mappings themselves stay valid until the processes
    exit, which is when the kernel frees the memory, crash or not.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir():  # not Linux: DeepSpeed's op is not built there either
        return
    dist.barrier()
    env = os.environ
    name = (f"deepspeed_allreduce_buffer_{os.getuid()}_{env.get('MASTER_ADDR', '')}_"
            f"{env.get('MASTER_PORT', '')}_{rank}")
    (shm / name).unlink(missing_ok=True)  # absent when DeepSpeed chose plain gloo


def average_(tensors: list[torch.Tensor]) -> None:
    """In-place mean across ranks (running statistics that must agree everywhere)."""
    if dist.get_world_size() == 1 or not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t).to(t.dtype))
        offset += t.numel()


def broadcast_from_rank0_(tensors: list[torch.Tensor]) -> None:
    """In-place copy of rank 0's values to every rank, one collective per dtype."""
    if dist.get_world_size() == 1 or not tensors:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        dist.broadcast(flat, src=0)
        offset = 0
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def first_failing_rank(failed: bool, world: World) -> int | None:
    """The lowest rank that reports ``failed``, agreed by all ranks (None if none did)."""
    flag = torch.tensor([world.rank if failed else world.world_size], device=world.device)
    if world.world_size > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    rank = int(flag.item())
    return None if rank == world.world_size else rank


def stop_together(problem: PgnmError | None, world: World, where: str) -> None:
    """Every rank learns whether any rank failed, and all raise at once: the failing rank its
    own error, the others :class:`PeerFailed`. No rank is left waiting in a collective for a
    peer that has gone, which gloo would report as a traceback about a closed connection."""
    bad = first_failing_rank(problem is not None, world)
    if problem is not None:
        raise problem
    if bad is not None:
        raise PeerFailed(f"{where}: rank {bad} failed (its message says why); stopping with it")


def gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if dist.get_world_size() == 1:
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
