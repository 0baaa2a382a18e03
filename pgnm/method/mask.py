"""The noise mask: what it means, and the one function every caller builds it with.

    grid values (B, G*G) -> reshape (B, 1, G, G) -> nearest upsample to (S, S)
        -> Gaussian blur (kernel k, sigma, reflect padding) -> multiply into the image

``apply_mask`` is that function (training, evaluation, the gallery and the preview all call
it); ``mask.kernel`` picks who computes it: this module's reference chain, or one of the fast
kernels in ``pgnm.kernels`` (fused, Triton), which agree with it to float rounding.

It mirrors ``F.interpolate`` (default nearest mode) and
``torchvision.transforms.functional.gaussian_blur`` as the official code calls them. Note what
that blur is: a k = 13 kernel with sigma = 6 is cut off at +-1 sigma and renormalised, so it is
close to a 13-px box filter, not a wide Gaussian. The mask multiplies the *normalised* image,
pulling pixels toward the dataset mean, not toward black.

Every kernel in ``pgnm.kernels`` is tested against the reference chain here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def check_blur(kernel_size: int, sigma: float, size: int | None = None,
               grid: int | None = None) -> None:
    """The one check of the mask settings (every kernel runs it): a ValueError naming the
    argument for anything the reference chain cannot run."""
    named = [("grid", grid), ("size", size), ("kernel_size", kernel_size)]
    for name, value in named:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if not math.isfinite(sigma):
        raise ValueError(f"sigma must be finite, got {sigma!r}")
    if size is not None and kernel_size // 2 >= size:  # reflect padding reaches no further
        raise ValueError(
            f"kernel_size {kernel_size} needs images larger than {kernel_size // 2} px for "
            f"reflect padding, got {size} px"
        )


def gaussian_kernel1d(
    kernel_size: int,
    sigma: float,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Weights at integer offsets -(k-1)/2 .. (k-1)/2, truncated there and summing to one."""
    check_blur(kernel_size, sigma)
    offsets = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).to(dtype=dtype, device=device)


def gaussian_blur(images: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """Depthwise 2-D blur of (B, C, H, W) with reflect padding, as torchvision does it."""
    pad = kernel_size // 2
    check_blur(kernel_size, sigma, min(images.shape[-2:]))
    k1 = gaussian_kernel1d(kernel_size, sigma, images.dtype, images.device)
    channels = images.shape[1]
    kernel = torch.outer(k1, k1).expand(channels, 1, kernel_size, kernel_size)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(padded, kernel, groups=channels)


def upsample_grid(values: Tensor, size: int) -> Tensor:
    """(B, G*G) cell values -> (B, 1, size, size), nearest (64 -> 224: cells of 3 and 4 px)."""
    batch, cells = values.shape
    grid = int(round(cells**0.5))
    if grid * grid != cells:
        raise ValueError(f"expected G*G cell values per image, got {cells}")
    grid_image = values.reshape(batch, 1, grid, grid)
    if grid == size:
        return grid_image
    return F.interpolate(grid_image, size=(size, size), mode="nearest")


def build_mask(values: Tensor, size: int, kernel_size: int = 13, sigma: float = 6.0) -> Tensor:
    """(B, G*G) cell values in (0, 1) -> smooth (B, 1, size, size) mask."""
    return gaussian_blur(upsample_grid(values, size), kernel_size, sigma)


def reference_apply(images: Tensor, values: Tensor, kernel_size: int = 13,
                    sigma: float = 6.0) -> Tensor:
    """The official chain: each (C, S, S) image times the mask its cell values describe."""
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square images, got {tuple(images.shape[-2:])}")
    mask = build_mask(values.to(images.dtype), images.shape[-1], kernel_size, sigma)
    return images * mask


def apply_mask(images: Tensor, values: Tensor, kernel_size: int = 13, sigma: float = 6.0,
               kernel: str = "auto") -> Tensor:
    """(B, C, S, S) images times the mask built from (B, G*G) cell values, broadcast over C.
    The mask alone is ``apply_mask(ones (B, 1, S, S), values)``."""
    if kernel == "reference":
        return reference_apply(images, values, kernel_size, sigma)
    # Imported here: the kernels build on this module's blur weights.
    from pgnm.kernels import run_mask_kernel

    return run_mask_kernel(kernel, images, values, kernel_size, sigma)
