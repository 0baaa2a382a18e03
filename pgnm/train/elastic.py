"""Elastic runs (``engine.elastic``): world size W with accumulation A is the same run as
world W*A without accumulation, so a checkpoint resumes at another world size.

Three things would otherwise depend on the world size, each made a function of the global
batch instead:

* **Sample order and augmentation**: the loader's global order (``pgnm.data.order``); micro-batch
  ``a`` of rank ``r`` is slot ``a * W + r`` of its global batch.
* **Noise** (masks, dropout): each slot's stream is seeded from (seed, optimizer step, slot).
* **Running statistics.** Without accumulation, every rank starts a step from the same
  running state and BatchNorm statistics (rank 0's), updates them from its own batch, and the
  ranks then average the running state while BatchNorm keeps rank 0's. So with accumulation
  every micro-batch of a window starts from the window's starting values; the running
  state is the mean of the micro-batches' updates (then averaged over ranks), and BatchNorm
  keeps what the window's first micro-batch made of it.

The price is read locality (each rank reads from every shard) and a clone of the running
state and buffers per micro-batch. Resuming at another world size needs ZeRO stage 0, whose
optimizer state is not partitioned (DeepSpeed refuses partitions written by another number
of ranks unless converted to its universal format), the webdataset loader, and the shared
policy running state; the global batch (batch x world x accumulation) stays the same, the
accumulation making up the difference.
"""

from __future__ import annotations

import torch

from pgnm.config import Config, with_overrides
from pgnm.errors import CheckpointError, ConfigError
from pgnm.seeds import seed_slot
from pgnm.train.checkpoint import Position
from pgnm.train.distributed import broadcast_from_rank0_


class ElasticWindow:
    """The per-micro-batch bookkeeping of one rank (see the module docstring)."""

    def __init__(self, seed: int, rank: int, world_size: int, accumulation: int,
                 rank0_buffers: list[torch.Tensor], running_state: list[torch.Tensor]) -> None:
        self.seed, self.rank, self.world_size, self.accumulation = (
            seed, rank, world_size, accumulation)
        self.buffers, self.state = rank0_buffers, running_state
        self._start_buffers: list[torch.Tensor] = []
        self._start_state: list[torch.Tensor] = []
        self._first_buffers: list[torch.Tensor] = []
        self._state_sum: list[torch.Tensor] = []
        self.micro = 0

    def before(self, micro: int, global_step: int) -> None:
        """Before micro-batch ``micro`` of the window that ends at optimizer step
        ``global_step + 1``."""
        self.micro = micro
        seed_slot(self.seed, global_step, micro * self.world_size + self.rank)
        if micro == 0:
            broadcast_from_rank0_(self.buffers)
        if self.accumulation == 1:
            return  # one micro-batch per window: nothing to start again from
        if micro == 0:
            self._start_buffers = [b.clone() for b in self.buffers]
            self._start_state = [s.clone() for s in self.state]
            self._state_sum = [torch.zeros_like(s, dtype=torch.float64) for s in self.state]
        else:
            _copy(self._start_buffers, self.buffers)
            _copy(self._start_state, self.state)

    def after(self) -> None:
        """After the micro-batch's backward pass (autograd holds on to the BatchNorm
        statistics the forward pass used, so they may change only then)."""
        if self.accumulation == 1:
            return
        for total, s in zip(self._state_sum, self.state, strict=True):
            total += s.double()
        if self.micro == 0:
            self._first_buffers = [b.clone() for b in self.buffers]
        else:
            _copy(self._first_buffers, self.buffers)

    def close(self) -> None:
        """At the window's end, before the ranks average the running state."""
        if self.accumulation == 1:
            return  # the state is the one micro-batch's update
        for total, s in zip(self._state_sum, self.state, strict=True):
            s.copy_((total / self.accumulation).to(s.dtype))


def _copy(sources: list[torch.Tensor], targets: list[torch.Tensor]) -> None:
    for source, target in zip(sources, targets, strict=True):
        target.copy_(source)


def check_elastic(config: Config) -> None:
    """Refuse an elastic run that could not resume at another world size."""
    if not config.engine.elastic:
        return
    if config.engine.zero_stage != 0:
        raise ConfigError(f"engine.elastic=true needs engine.zero_stage=0 (not "
                          f"{config.engine.zero_stage}): ZeRO partitions of the optimizer state "
                          "are written per rank and DeepSpeed loads them only at the same "
                          "world size")
    if config.policy.enabled and not config.policy.share_running_state:
        raise ConfigError("engine.elastic=true needs policy.share_running_state=true: a "
                          "running state per rank cannot follow a change of world size")


def resume_at(config: Config, saved: Position, world_size: int, where: str) -> Config:
    """The config that continues a checkpoint written by ``saved.world_size`` ranks on
    ``world_size`` ranks: the same global batch, the accumulation making up the difference."""
    saved_world, saved_accumulation = saved.world_size, saved.grad_accum_steps
    if saved_world == world_size:
        return config
    if not (saved.elastic and config.engine.elastic):
        raise CheckpointError(
            f"{where} was written by {saved_world} ranks, this run has {world_size}; exact "
            "resume needs the same world size unless the run is elastic (engine.elastic=true "
            "from its start)")
    micro_batches = saved_world * saved_accumulation
    if micro_batches % world_size:
        raise CheckpointError(
            f"{where}: its global batch holds {micro_batches} micro-batches "
            f"({saved_world} ranks x {saved_accumulation}), which {world_size} ranks cannot "
            "share evenly; resume on a world size that divides it")
    accumulation = micro_batches // world_size
    return with_overrides(config, {"optim.grad_accum_steps": accumulation},
                          f"elastic resume of {where} ({saved_world} -> {world_size} ranks)")
