"""In-memory synthetic images with a learnable class signal, for previews and tests.

Each class owns a few Gaussian blobs at fixed positions on a noisy grey background (a crude
stand-in for an organ at a characteristic place); images jitter the blobs' positions, sizes and
contrast. Values come out normalised with the RadImageNet statistics, like real training
crops. The file-writing RadImageNet generator lives in ``data_tools``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def synthetic_batch(
    batch_size: int,
    num_classes: int,
    size: int,
    generator: torch.Generator,
    mean: float = 0.3162,
    std: float = 0.3213,
) -> tuple[Tensor, Tensor]:
    """(B, 3, size, size) normalised float images and (B,) int64 labels."""
    labels = torch.randint(num_classes, (batch_size,), generator=generator)
    # Blob layout per class, from a generator seeded by the class alone: stable across calls.
    layouts = []
    for label in labels.tolist():
        class_rng = torch.Generator().manual_seed(1_000_003 * (label + 1))
        layouts.append(torch.rand(3, 4, generator=class_rng))  # 3 blobs: x, y, radius, weight
    layout = torch.stack(layouts)  # (B, 3, 4)
    jitter = 0.05 * torch.randn(layout.shape, generator=generator)
    layout = (layout + jitter).clamp(0.0, 1.0)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    cx, cy = layout[..., 0, None, None], layout[..., 1, None, None]
    radius = 0.05 + 0.15 * layout[..., 2, None, None]
    weight = 0.3 + 0.7 * layout[..., 3, None, None]
    blobs = weight * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
    image = 0.2 + blobs.sum(dim=1).clamp(max=1.0) * 0.7
    image = image + 0.05 * torch.randn(image.shape, generator=generator)
    image = image.clamp(0.0, 1.0)
    image = (image - mean) / std
    return image.unsqueeze(1).expand(-1, 3, -1, -1).contiguous(), labels


def chance_ce(num_classes: int) -> float:
    """Cross-entropy of a uniform guess: where an untrained classifier starts."""
    return math.log(num_classes)
