"""What every loader promises: one augmentation spec and one way of splitting data over ranks.

Augmentation (the official recipe): training crops are RandomResizedCrop to S
(area 0.08-1 of the image, aspect 3/4-4/3, bilinear with antialiasing) and a horizontal flip
with probability 0.5; evaluation resizes the shorter side to 256 and centre-crops S. Images
are grey, normalised with mean 0.3162 / std 0.3213 and replicated to 3 channels.

Ranks: a split of N samples (its shards in the epoch's order, see ``order.py``; samples
already shuffled across classes at write time) is cut into contiguous ranges, rank r getting
[floor(N r / W), floor(N (r + 1) / W)) -- exactly how DALI's reader assigns ``shard_id``.
In training every rank runs floor(N / W) // B batches per epoch, the same number on every
rank whatever the ranges' sizes, so no rank waits forever in a collective. The shard order is
permuted every epoch, so each rank's range holds different shards from epoch to epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pgnm.config import DataConfig
from pgnm.errors import DataError  # re-exported: the loaders' error type


@dataclass(frozen=True)
class AugmentSpec:
    image_size: int = 224
    eval_resize: int = 256
    area: tuple[float, float] = (0.08, 1.0)
    aspect: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    mean: float = 0.3162
    std: float = 0.3213
    window: tuple[float, float] | None = None  # 16-bit data: (low, high) in the data's units

    @classmethod
    def from_config(cls, config: DataConfig) -> AugmentSpec:
        return cls(config.image_size, config.eval_resize, mean=config.mean, std=config.std,
                   window=config.window)


@dataclass(frozen=True)
class ValueRange:
    """How stored grey values become 0..1 before mean/std: ``(v - low) / span``, clipped to
    0..1 when ``clip`` (a window narrower than what is stored)."""

    low: float
    span: float
    clip: bool


def value_range(bit_depth: int, value_offset: int, window: tuple[float, float] | None,
                where: str) -> ValueRange:
    """8-bit images: 0..255. 16-bit: 0..65535, or the window (in the data's own units:
    stored = value + ``value_offset``), which keeps a CT's Hounsfield range until here."""
    if window is None:
        return ValueRange(0.0, 255.0 if bit_depth == 8 else 65535.0, clip=False)
    if bit_depth == 8:
        raise DataError(f"data.window is set but {where} holds 8-bit images, windowed when "
                        "they were written; unset data.window (it is for 16-bit data sets)")
    low, high = window
    if not high > low:
        raise DataError(f"data.window: high ({high}) must be above low ({low})")
    return ValueRange(low + value_offset, high - low, clip=True)


def rank_range(total: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of rank ``rank``'s contiguous share of ``total`` samples."""
    return total * rank // world, total * (rank + 1) // world


def train_batches_per_epoch(total: int, world: int, batch_size: int) -> int:
    """Full batches every rank can fill, whichever range it holds (the smallest is N // W)."""
    return (total // world) // batch_size


def eval_batches(total: int, rank: int, world: int, batch_size: int) -> int:
    start, stop = rank_range(total, rank, world)
    return math.ceil((stop - start) / batch_size)


def batches_per_epoch(
    total: int, batch_size: int, train: bool, rank: int, world: int, where: str,
    accumulation: int = 1, elastic: bool = False,
) -> int:
    """Training: full batches every rank can fill, cut to whole optimizer steps of
    ``accumulation`` batches (so no accumulation window straddles two epochs or a checkpoint);
    ``elastic``: whole global batches of the split (:func:`pgnm.data.order.elastic_rank_order`).
    Evaluation: this rank's share, once."""
    if not train:
        return eval_batches(total, rank, world, batch_size)
    if elastic:
        batches = total // (batch_size * world * accumulation) * accumulation
    else:
        batches = train_batches_per_epoch(total, world, batch_size)
        batches -= batches % accumulation
    if batches == 0:
        steps = f" x {accumulation} accumulated batches" if accumulation > 1 else ""
        raise DataError(
            f"{where}: {total} samples cannot fill one batch of {batch_size}{steps} on each "
            f"of {world} ranks"
        )
    return batches


def random_resized_crop_box(
    height: int, width: int, rng: np.random.Generator, spec: AugmentSpec
) -> tuple[int, int, int, int]:
    """(top, left, h, w) as torchvision's RandomResizedCrop draws it: 10 tries, then centre."""
    area = height * width
    log_aspect = (math.log(spec.aspect[0]), math.log(spec.aspect[1]))
    for _ in range(10):
        target = area * rng.uniform(*spec.area)
        aspect = math.exp(rng.uniform(*log_aspect))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    ratio = width / height  # fallback: the largest centred crop within the aspect bounds
    if ratio < spec.aspect[0]:
        w, h = width, int(round(width / spec.aspect[0]))
    elif ratio > spec.aspect[1]:
        h, w = height, int(round(height * spec.aspect[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w
