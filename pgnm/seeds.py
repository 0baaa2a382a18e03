"""Seeds: one way to derive a seed from several integers, one way to draw on a side stream.

NumPy's ``SeedSequence`` mixes the parts into well-spread 32-bit words, so nearby inputs such
as (seed, epoch) and (seed, epoch + 1) give unrelated streams, with no hand-picked primes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


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
