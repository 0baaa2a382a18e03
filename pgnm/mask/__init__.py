"""Noise-mask kernels: turn per-cell Beta draws into a smooth mask and multiply it in.

``apply_mask`` is the one entry point the trainer calls; ``kernel`` (``mask.kernel`` in the
config) picks the implementation, all of which agree with ``reference`` to float rounding:

    reference  the official four-op chain (upsample, 13x13 blur, multiply); slow, obviously right
    fused      exact A @ N @ A.T with a banded per-axis operator (fused.py); any device
    triton     one-pass Triton kernel (triton_kernel.py); CUDA tensors, or CPU tensors under
               TRITON_INTERPRET=1 (the interpreter, for tests)
    auto       triton for CUDA tensors when triton is installed and no gradient is needed,
               fused otherwise

The Triton module is imported only when it is used, so this package works without triton.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import torch
from torch import Tensor

from pgnm.errors import ConfigError
from pgnm.mask import fused, reference

KERNEL_CHOICES = ("reference", "fused", "triton", "auto")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _interpreting() -> bool:
    # The values triton itself reads as true for TRITON_INTERPRET.
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in {"1", "true", "on", "yes"}


def _triton_apply(images: Tensor, values: Tensor, kernel_size: int, sigma: float) -> Tensor:
    if not triton_available():
        raise ConfigError(
            "mask.kernel='triton' needs the triton package; install it or use 'fused'")
    if not images.is_cuda and not _interpreting():
        raise ConfigError(
            f"mask.kernel='triton' runs on CUDA tensors, got images on {images.device}; "
            "use mask.kernel='fused' or 'auto' on the CPU (or set TRITON_INTERPRET=1 to run "
            "the Triton interpreter, for testing)"
        )
    from pgnm.mask import triton_kernel

    return triton_kernel.apply_mask(images, values, kernel_size, sigma)


KERNELS: dict[str, Callable[[Tensor, Tensor, int, float], Tensor]] = {
    "reference": reference.apply_mask,
    "fused": fused.apply_mask,
    "triton": _triton_apply,
}


def resolve_kernel(kernel: str, images: Tensor, values: Tensor | None = None) -> str:
    """The implementation ``apply_mask`` runs for this call: 'auto' resolved, names checked."""
    if kernel == "auto":
        needs_grad = torch.is_grad_enabled() and (
            images.requires_grad or (values is not None and values.requires_grad)
        )
        if images.is_cuda and triton_available() and not needs_grad:
            return "triton"
        return "fused"
    if kernel not in KERNELS:
        raise ValueError(
            f"mask.kernel={kernel!r} is not available; choose from {list(KERNEL_CHOICES)}"
        )
    return kernel


def apply_mask(
    images: Tensor, values: Tensor, kernel_size: int = 13, sigma: float = 6.0, kernel: str = "auto"
) -> Tensor:
    """(B, C, S, S) images times the mask built from (B, G*G) cell values."""
    return KERNELS[resolve_kernel(kernel, images, values)](images, values, kernel_size, sigma)


__all__ = [
    "KERNELS",
    "KERNEL_CHOICES",
    "apply_mask",
    "fused",
    "reference",
    "resolve_kernel",
    "triton_available",
]
