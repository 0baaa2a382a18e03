"""Timing that holds on a GPU as on a CPU.

On the CPU a call's time is ``perf_counter`` around it. On a GPU the work is queued, so a
host clock measures the queueing unless something waits: each timed call is bracketed by
CUDA events on the current stream and the end event is waited for, which times the GPU work
itself (and the gaps the host leaves in it).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def default_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
        else torch.device("cpu")


def timed_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one call of ``fn``, its GPU work included."""
    if device.type != "cuda":
        start = time.perf_counter()
        fn()
        return 1e3 * (time.perf_counter() - start)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int,
              device: torch.device | None = None) -> float:
    device = device or torch.device("cpu")
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return statistics.median(timed_ms(fn, device) for _ in range(repeats))
