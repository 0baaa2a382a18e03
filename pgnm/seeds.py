"""Seeds: one way to derive a seed from several integers, one way to draw on a side stream.

NumPy's ``SeedSequence`` mixes the parts into well-spread 32-bit words, so nearby inputs such
as (seed, epoch) and (seed, epoch + 1) give unrelated streams, with no hand-picked primes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_weights(seed: int) -> None:
    """Every RNG, as every rank sets it before building the same initial weights (and the
    policy's running state)."""
    _seed_all(seed)


def seed_training_stream(seed: int, rank: int) -> None:
    """Each rank's own stream for masks and dropout, seeded once the engine is built."""
    _seed_all(seed + 1_000 * (rank + 1))


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive(*parts: int) -> int:
    """A 63-bit seed that depends on every part and their order."""
    words = np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(2)
    return int((int(words[0]) << 31) ^ int(words[1]))


@contextmanager
def separate_stream(seed: int, device: torch.device) -> Iterator[None]:
    """Random draws inside come from their own stream seeded with ``seed``; the CPU's and
    ``device``'s generators are restored afterwards, so whatever runs here (evaluation, the
    mask gallery) does not shift the training run's stream. Only those two generators are
    touched: ``torch.manual_seed`` would reseed every GPU, which ``fork_rng`` restores only
    for the devices it is given."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed(seed)  # the current device only
        yield


def seed_slot(seed: int, global_step: int, slot: int) -> None:
    """The stream for masks and dropout of one slot of one global batch (``engine.elastic``):
    a function of where the micro-batch sits in the run, not of the rank that computes it."""
    _seed_all(derive(seed, global_step, slot))
