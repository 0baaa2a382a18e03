"""Speed, kept apart from the method: fast implementations of what ``pgnm.method`` defines.

Each kernel computes exactly what its reference in ``pgnm.method`` means, to float rounding,
and is tested against it (``tests/kernels``):

    fused      the mask as A @ N @ A.T with a banded per-axis operator (``fused.py`` on
               ``operator.py``); any device, the CPU path
    triton     one-pass Triton mask kernel (``triton_kernel.py``); CUDA tensors, or CPU tensors
               under TRITON_INTERPRET=1 (the interpreter, for tests)
    gamma      Marsaglia-Tsang Gamma draws on whole tensors, without host synchronisation
               (``gamma.py``), behind ``policy.sampler=gamma``

``run_mask_kernel`` is the door ``pgnm.method.mask.apply_mask`` goes through; ``auto`` runs
Triton behind :class:`~pgnm.kernels.safety.FirstUseCheck`. Submodules are imported on use, so
this package works without triton and without import cycles (the kernels build on the blur
weights ``pgnm.method.mask`` defines).
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

from pgnm.errors import ConfigError

KERNEL_CHOICES = ("reference", "fused", "triton", "auto")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _interpreting() -> bool:
    # The values triton itself reads as true for TRITON_INTERPRET.
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in {"1", "true", "on", "yes"}


def triton_apply(images: Tensor, values: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """``mask.kernel=triton``: the Triton kernel, or a ConfigError saying why it cannot run."""
    if not triton_available():
        raise ConfigError(
            "mask.kernel='triton' needs the triton package; install it or use 'fused'")
    if not images.is_cuda and not _interpreting():
        raise ConfigError(
            f"mask.kernel='triton' runs on CUDA tensors, got images on {images.device}; "
            "use mask.kernel='fused' or 'auto' on the CPU (or set TRITON_INTERPRET=1 to run "
            "the Triton interpreter, for testing)"
        )
    from pgnm.kernels import triton_kernel

    return triton_kernel.apply_mask(images, values, kernel_size, sigma)


def resolve_kernel(kernel: str, images: Tensor, values: Tensor | None = None) -> str:
    """The implementation a call runs: 'auto' resolved, names checked (``auto``'s Triton runs
    behind :class:`~pgnm.kernels.safety.FirstUseCheck`)."""
    if kernel == "auto":
        needs_grad = torch.is_grad_enabled() and (
            images.requires_grad or (values is not None and values.requires_grad)
        )
        if images.is_cuda and triton_available() and not needs_grad:
            return "triton"
        return "fused"
    if kernel not in KERNEL_CHOICES:
        raise ValueError(
            f"mask.kernel={kernel!r} is not available; choose from {list(KERNEL_CHOICES)}"
        )
    return kernel


def run_mask_kernel(kernel: str, images: Tensor, values: Tensor, kernel_size: int,
                    sigma: float) -> Tensor:
    """``images`` times the mask of ``values`` with a fast kernel ('fused', 'triton', 'auto')."""
    chosen = resolve_kernel(kernel, images, values)
    if chosen == "reference":
        raise ValueError("the reference mask is pgnm.method.mask.reference_apply, not a kernel")
    if chosen == "fused":
        from pgnm.kernels import fused

        return fused.apply_mask(images, values, kernel_size, sigma)
    if kernel == "auto":
        from pgnm.kernels.safety import checked_triton

        return checked_triton(images, values, kernel_size, sigma)
    return triton_apply(images, values, kernel_size, sigma)


__all__ = ["KERNEL_CHOICES", "resolve_kernel", "run_mask_kernel", "triton_apply",
           "triton_available"]
