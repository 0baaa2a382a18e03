"""Elastic runs (``engine.elastic``): world size W with accumulation A is the same run as
world W*A without accumulation, so a checkpoint resumes at another world size.

Four things would otherwise depend on the world size, each made a function of the global
batch instead:

* **Sample order and augmentation**: the loader's global order (``pgnm.data.order``); micro-batch
  ``a`` of rank ``r`` is slot ``r * A + a`` of its global batch, so each rank holds a run of
  consecutive slots.
* **Noise** (masks, dropout): each slot's stream is seeded from (seed, optimizer step, slot).
* **The gradient sum.** Float addition is not associative: accumulating four micro-batches on
  one rank, ((g0 + g1) + g2) + g3, and two on each of two ranks, (g0 + g1) + (g2 + g3), round
  differently, and the Beta sampler's accept/reject steps grow such differences into other
  masks within a few steps. So the slots are always summed pairwise, (g0 + g1) + (g2 + g3):
  a rank sums its own run of slots pairwise (a stack of at most log2 A partial sums), then
  the ranks sum their totals pairwise too (recursive doubling, log2 W exchanges of the
  gradient, in place of DeepSpeed's ring all-reduce). The averages (1/A before the backward
  pass, 1/W after the sum) are exact when A and W are powers of two.
* **Running statistics.** Without accumulation, every rank starts a step from the same
  running state and BatchNorm statistics (rank 0's), updates them from its own batch, and the
  ranks then average the running state while BatchNorm keeps rank 0's. So with accumulation
  every micro-batch of a window starts from the window's starting values; the running
  state is the mean of the micro-batches' updates, summed in float64 on each rank and over
  the ranks and rounded once, and BatchNorm keeps what the window's first micro-batch made of
  it.

So a world of W ranks x A micro-batches resumes bit for bit at any W' x A' with W * A = W' * A'
when all four are powers of two (other world sizes fall back to DeepSpeed's all-reduce: the
run is right, but a resume across them is exact only to float rounding). The price is read
locality (each rank reads from every shard), a clone of the running state and buffers per
micro-batch, and up to log2 A gradient copies. Resuming at another world size needs ZeRO
stage 0, whose optimizer state is not partitioned (DeepSpeed refuses partitions written by
another number of ranks unless converted to its universal format), the webdataset loader,
and the shared policy running state; the global batch (batch x world x accumulation) stays
the same, the accumulation making up the difference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pgnm.config import Config, with_overrides
from pgnm.errors import CheckpointError, ConfigError
from pgnm.seeds import seed_slot
from pgnm.train.checkpoint import Position
from pgnm.train.distributed import average_, broadcast_from_rank0_, tree_sum_

if TYPE_CHECKING:
    from deepspeed import DeepSpeedEngine


class PairwiseSum:
    """Gradients summed pairwise as they arrive, (g0 + g1) + (g2 + g3): the order a balanced
    tree over the slots gives, whichever way the slots are split into runs of a power of two."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, list[torch.Tensor]]] = []  # (slots summed, partial sums)

    def add(self, grads: list[torch.Tensor]) -> None:
        node = (1, grads)
        while self._stack and self._stack[-1][0] == node[0]:
            size, left = self._stack.pop()
            node = (2 * size, [a.add_(b) for a, b in zip(left, node[1], strict=True)])
        self._stack.append(node)

    def total(self) -> list[torch.Tensor]:
        (_, right), *rest = reversed(self._stack)  # a single node unless A is no power of two
        for _, left in rest:
            right = [a.add_(b) for a, b in zip(left, right, strict=True)]
        self._stack = []
        return right


class ElasticWindow:
    """The per-micro-batch bookkeeping of one rank (see the module docstring)."""

    def __init__(self, seed: int, rank: int, world_size: int, accumulation: int,
                 rank0_buffers: list[torch.Tensor], running_state: list[torch.Tensor],
                 params: list[torch.nn.Parameter]) -> None:
        self.seed, self.rank, self.world_size, self.accumulation = (
            seed, rank, world_size, accumulation)
        self.buffers, self.state, self.params = rank0_buffers, running_state, params
        self._start_buffers: list[torch.Tensor] = []
        self._start_state: list[torch.Tensor] = []
        self._first_buffers: list[torch.Tensor] = []
        self._state_sum: list[torch.Tensor] = []
        self._grads = PairwiseSum()
        self.micro = 0

    def before(self, micro: int, global_step: int) -> None:
        """Before micro-batch ``micro`` of the window that ends at optimizer step
        ``global_step + 1``."""
        self.micro = micro
        seed_slot(self.seed, global_step, self.rank * self.accumulation + micro)
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

    def backward(self, engine: DeepSpeedEngine, loss: torch.Tensor) -> None:
        """The micro-batch's backward pass; at the window's last, the slots' pairwise sum,
        then the ranks' (``tree_sum_``), in place of DeepSpeed's in-order accumulation and
        ring all-reduce."""
        with engine.no_sync():
            engine.backward(loss)  # scaled by 1/A, exact for a power of two
        if self.accumulation > 1:
            # only now: autograd holds on to the BatchNorm statistics the forward pass used
            for total, s in zip(self._state_sum, self.state, strict=True):
                total += s.double()
            if self.micro == 0:
                self._first_buffers = [b.clone() for b in self.buffers]
            else:
                _copy(self._first_buffers, self.buffers)
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
        for p in self.params:
            p.grad = None  # the next micro-batch's gradient arrives alone
        self._grads.add(grads)
        if self.micro < self.accumulation - 1:
            return
        totals = self._grads.total()
        flat = torch.cat([t.reshape(-1) for t in totals])
        if not tree_sum_(flat):  # a world of 3, 5, ... ranks: DeepSpeed's own all-reduce
            for p, total in zip(self.params, totals, strict=True):
                p.grad = total
            engine.allreduce_gradients()
            return
        flat /= self.world_size  # the mean over ranks DeepSpeed's all-reduce would take
        offset = 0
        for p in self.params:
            p.grad = flat[offset: offset + p.numel()].view_as(p)
            offset += p.numel()

    def close(self) -> None:
        """At the window's end: the running state becomes the mean over every slot."""
        windowed = self.accumulation > 1  # else one update per rank: the mean over ranks
        average_(self.state, self._state_sum if windowed else None, self.accumulation)


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
