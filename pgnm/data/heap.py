"""A fixed glibc mmap threshold for processes that take batches from DataLoader workers.

glibc serves allocations above its mmap threshold (128 KiB at start) from fresh mappings,
returned to the system on free. After the first such block is freed, it raises the threshold
to that block's size (up to 32 MiB), so from then on every per-batch tensor of a few MiB comes
from the heap, and the heap keeps what was freed: measured on the webdataset loader with two
workers, the main process's unique memory went from 367 MiB after 40 batches to 649 MiB after
80 (see benchmarks/README.md, "Cost curves"). A threshold set once, through ``mallopt``,
switches the dynamic adjustment off (glibc's ``M_MMAP_THRESHOLD``; ``mallopt(3)``).
"""

from __future__ import annotations

import ctypes
import os
import platform

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_applied: int | None = None


def fix_mmap_threshold(threshold: int) -> bool:
    """Set glibc's mmap threshold to ``threshold`` bytes for this process, once; False where
    it does not apply: not glibc, or the user chose a threshold through glibc's own
    ``MALLOC_MMAP_THRESHOLD_`` (which wins)."""
    global _applied
    if platform.libc_ver()[0] != "glibc" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    if _applied == threshold:
        return True
    if ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, threshold) != 1:
        return False  # above glibc's ceiling (32 MiB on 64-bit); the config bounds it below
    _applied = threshold
    return True
