"""Which samples a rank reads in an epoch, and in what order: a pure function of the plan.

The order is computed from ``dataset.json``'s sample counts alone, before anything is read,
so every DataLoader worker knows which samples its batches hold and reads only those; the
batches do not depend on the worker count, and resuming at (epoch, step) reads nothing of the
batches already done.

Two levels of shuffling, both fresh every epoch:

1. **Shard order** (:func:`shard_order`): the split's shards are permuted with a seed shared
   by all ranks; the permuted concatenation is cut into contiguous rank ranges
   (:func:`pgnm.data.spec.rank_range`). So each epoch a rank reads different shards, and
   DALI's reader, given the same permuted list, gives every rank the same samples.
2. **Samples within the rank's range** (:func:`rank_order`): a full permutation by default,
   or a streaming buffer of ``window`` samples. Reads are by byte range through the shard
   index, so the window holds sample numbers, not images: a full shuffle costs no memory,
   only read locality (a batch's samples come from anywhere in the range).

Why the default is a full shuffle: with a window, two samples of the same shard stay within
about ``window`` positions of each other every epoch, so they share a batch again far more
often than chance. Of the pairs sharing a batch, about ``S / window`` come from one shard
(S samples per shard) and those meet again with probability about ``B / window``; a full
shuffle makes every pair meet again with probability about ``(B - 1) / (N - 1)``. A window of
at least ``sqrt(S N)`` samples keeps the excess below 2x (``tests/data/test_order.py``).

Evaluation reads the stored order: rank r's contiguous range, shards not permuted.

**Elastic order** (:func:`elastic_rank_order`, ``engine.elastic``): one order of the whole
split per epoch, the same whatever the world size, cut into global batches of
``batch x world x accumulation`` samples. Micro-batch ``a`` of rank ``r`` in a global batch
is its slot ``r * accumulation + a`` (each rank a run of consecutive slots), so world 2
without accumulation and world 1 with two micro-batches read the same global batches, slot
for slot, and a checkpoint taken by one resumes in the other. The price is locality: every
rank reads from every shard.
"""

from __future__ import annotations

import numpy as np

from pgnm.data.spec import rank_range
from pgnm.seeds import derive

_SHARDS, _SAMPLES = 1, 2  # the two seed streams, kept apart


def shard_order(num_shards: int, seed: int, epoch: int, train: bool) -> np.ndarray:
    """The epoch's shard order (indices into the split's shard list); identity for
    evaluation. The same on every rank."""
    if not train:
        return np.arange(num_shards)
    return np.random.default_rng(derive(seed, epoch, _SHARDS)).permutation(num_shards)


def rank_order(
    shard_counts: list[int],
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    train: bool,
    window: int = 0,
) -> np.ndarray:
    """The samples rank ``rank`` reads this epoch, in order, as indices into the split's
    stored order (shard by shard, as ``dataset.json`` lists them). ``window`` 0 shuffles the
    whole range; otherwise a streaming buffer of that many samples. Training callers take the
    first ``batches_per_epoch * batch_size``."""
    stream = _shard_stream(shard_counts, shard_order(len(shard_counts), seed, epoch, train))
    start, stop = rank_range(len(stream), rank, world_size)
    share = stream[start:stop]
    if not train:
        return share
    return _shuffle(share, window, np.random.default_rng(derive(seed, epoch, rank, _SAMPLES)))


def elastic_rank_order(
    shard_counts: list[int],
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    batch_size: int,
    accumulation: int,
    window: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(sample numbers, their positions in the epoch's global order) of the micro-batches
    rank ``rank`` reads, batch after batch: every global batch's slots ``rank * accumulation
    + a`` for ``a`` in ``range(accumulation)``, a run of consecutive slots (the gradient's
    pairwise sum over slots then splits into whole runs). Whole global batches only."""
    stream = _shard_stream(shard_counts, shard_order(len(shard_counts), seed, epoch, True))
    # no rank in the seed: one order for every world size
    stream = _shuffle(stream, window, np.random.default_rng(derive(seed, epoch, _SAMPLES)))
    per_global = batch_size * world_size * accumulation
    slots = rank * accumulation + np.arange(accumulation)  # this rank's slots, in order
    starts = (np.arange(len(stream) // per_global)[:, None] * per_global
              + slots[None, :] * batch_size).reshape(-1)
    positions = (starts[:, None] + np.arange(batch_size)[None, :]).reshape(-1)
    return stream[positions], positions


def _shard_stream(shard_counts: list[int], order: np.ndarray) -> np.ndarray:
    """The sample numbers of the shards in ``order``, shard after shard."""
    counts = np.asarray(shard_counts, dtype=np.int64)
    firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.concatenate(
        [np.arange(firsts[s], firsts[s] + counts[s]) for s in order] or [np.zeros(0, np.int64)]
    )


def _shuffle(stream: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """A full permutation (``window`` 0, or as large as the stream) or a streaming buffer."""
    if window <= 0 or window >= len(stream):
        return rng.permutation(stream)
    return _buffer_shuffle(stream, window, rng)


def _buffer_shuffle(stream: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """What a streaming shuffle buffer of ``window`` samples emits: each incoming sample
    replaces a random one in the buffer, which goes out; the rest leaves shuffled at the end."""
    slots = rng.integers(0, window, size=max(0, len(stream) - window))
    buffer = stream[:window].copy()
    out = np.empty_like(stream)
    for i, (incoming, slot) in enumerate(zip(stream[window:], slots)):
        out[i] = buffer[slot]
        buffer[slot] = incoming
    out[len(slots):] = rng.permutation(buffer)
    return out


def locate(sample: np.ndarray | int, shard_counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(shard index, index within the shard) of stored-order sample numbers."""
    ends = np.cumsum(np.asarray(shard_counts, dtype=np.int64))
    shard = np.searchsorted(ends, sample, side="right")
    return shard, np.asarray(sample) - (ends[shard] - np.asarray(shard_counts)[shard])
