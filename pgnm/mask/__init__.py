"""Noise-mask kernels: turn per-cell Beta draws into a smooth mask and multiply it in.

``apply_mask`` is the one entry point the trainer calls; ``kernel`` picks the implementation.
Only the reference chain exists so far; faster kernels plug in behind the same signature.
"""

from __future__ import annotations

from torch import Tensor

from pgnm.mask import reference

KERNELS = {"reference": reference.apply_mask}


def apply_mask(images: Tensor, values: Tensor, kernel_size: int = 13, sigma: float = 6.0,
               kernel: str = "reference") -> Tensor:
    """(B, C, S, S) images times the mask built from (B, G*G) cell values."""
    if kernel == "auto":
        kernel = "reference"
    try:
        implementation = KERNELS[kernel]
    except KeyError:
        raise ValueError(
            f"mask.kernel={kernel!r} is not available; choose from {sorted(KERNELS)} or 'auto'"
        ) from None
    return implementation(images, values, kernel_size, sigma)


__all__ = ["apply_mask", "KERNELS", "reference"]
