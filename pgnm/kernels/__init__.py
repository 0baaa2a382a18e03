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
import warnings
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


class FirstUseCheck:
    """A fast kernel behind a safety net, for ``mask.kernel=auto``: the first call for each
    (shape, dtype, layout, device) also runs the fused kernel and compares; a kernel that
    fails to compile or launch, or disagrees, is given up for the rest of the process with one
    warning, and the fused kernel runs instead (Triton can be importable yet unusable: no
    libcuda, an old GPU, ptxas trouble)."""

    def __init__(self, fast: Callable[[Tensor, Tensor, int, float], Tensor]) -> None:
        self.fast = fast
        self.verified: set[tuple] = set()
        self.given_up: str | None = None

    def __call__(self, images: Tensor, values: Tensor, kernel_size: int, sigma: float) -> Tensor:
        if self.given_up is not None:
            return fused.apply_mask(images, values, kernel_size, sigma)
        key = (tuple(images.shape), images.dtype, images.device, images.stride(), kernel_size,
               sigma, values.shape[-1])
        if key in self.verified:
            return self.fast(images, values, kernel_size, sigma)
        exact = fused.apply_mask(images, values, kernel_size, sigma)
        try:
            out = self.fast(images, values, kernel_size, sigma)
            tolerance = 1e-5 if images.dtype == torch.float32 else 2e-2
            error = float((out.float() - exact.float()).abs().max()) / max(
                1.0, float(exact.float().abs().max()))
            if not error <= tolerance:  # also catches NaN
                raise ValueError(f"differs from the fused kernel by {error:.2e} (> {tolerance})")
        except Exception as err:  # compile, launch or accuracy: any of them ends its use
            self.given_up = f"{type(err).__name__}: {err}".splitlines()[0]
            warnings.warn(f"mask.kernel=auto: the Triton kernel failed on first use "
                          f"({self.given_up}); the fused kernel runs instead", stacklevel=3)
            return exact
        self.verified.add(key)
        return out


_checked_triton = FirstUseCheck(lambda *args: _triton_apply(*args))

KERNELS: dict[str, Callable[[Tensor, Tensor, int, float], Tensor]] = {
    "reference": reference.apply_mask,
    "fused": fused.apply_mask,
    "triton": _triton_apply,
}


def resolve_kernel(kernel: str, images: Tensor, values: Tensor | None = None) -> str:
    """The implementation ``apply_mask`` runs for this call: 'auto' resolved, names checked
    (``auto``'s Triton runs behind :class:`FirstUseCheck`)."""
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
    chosen = resolve_kernel(kernel, images, values)
    if kernel == "auto" and chosen == "triton":
        return _checked_triton(images, values, kernel_size, sigma)
    return KERNELS[chosen](images, values, kernel_size, sigma)


__all__ = [
    "FirstUseCheck",
    "KERNELS",
    "KERNEL_CHOICES",
    "apply_mask",
    "fused",
    "reference",
    "resolve_kernel",
    "triton_available",
]
