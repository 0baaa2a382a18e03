"""The first-use safety net in front of the Triton kernel (``mask.kernel=auto``).

Triton can be importable yet unusable (no libcuda, an old GPU, ptxas trouble), so ``auto``
never trusts it blindly: the first call per (shape, dtype, layout, device) also runs the fused
kernel and compares.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from pgnm import kernels
from pgnm.kernels import fused


class FirstUseCheck:
    """A fast kernel behind a safety net: a kernel that fails to compile or launch, or that
    disagrees with the fused kernel on first use, is given up for the rest of the process with
    one warning, and the fused kernel runs instead."""

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
                          f"({self.given_up}); the fused kernel runs instead", stacklevel=4)
            return exact
        self.verified.add(key)
        return out


# Looked up at call time, so a test can stand in a failing kernel for the real one.
checked_triton = FirstUseCheck(lambda *args: kernels.triton_apply(*args))
