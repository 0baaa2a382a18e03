"""The fixed mmap threshold: what glibc's adaptive one does to a process that frees large
blocks under a live small one, and that the webdataset loader with workers sets it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pgnm.data.heap import fix_mmap_threshold

# Each in a fresh interpreter: the threshold is process-wide and glibc raises it only once.
# A first large free raises glibc's adaptive threshold to 8 MiB; then fifty 2 MiB blocks (a
# batch's size) are written, each followed by a live 100 KiB one, and the fifty are freed.
# Prints the process's anonymous memory (MiB) with the blocks held, and after the frees.
PROBE = """
import ctypes, sys
from pgnm.data.heap import fix_mmap_threshold
def anon():
    return int(open("/proc/self/status").read().split("RssAnon:")[1].split()[0]) // 1024
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold(128 * 1024)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(8 << 20))
blocks, live = [], []
for _ in range(50):
    blocks.append(libc.malloc(2 << 20))
    ctypes.memset(blocks[-1], 1, 2 << 20)
    live.append(libc.malloc(100 << 10))
held = anon()
for block in blocks:
    libc.free(block)
print(held, anon())
"""


def _anon_mib_held_and_after_frees(mode: str) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          check=True)
    held, after = map(int, done.stdout.split())
    return held, after


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_fixed_threshold_returns_freed_batches_that_the_adaptive_one_keeps():
    held, kept = _anon_mib_held_and_after_frees("adaptive")
    assert kept >= held - 5  # the 100 MiB freed stay with the process
    held, kept = _anon_mib_held_and_after_frees("fixed")
    assert kept <= held - 95  # each freed block went back to the system


def test_glibcs_own_setting_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert fix_mmap_threshold(128 * 1024) is False


def test_the_webdataset_loader_with_workers_fixes_it(tiny_shards):
    from pgnm.data import heap
    from pgnm.data.spec import AugmentSpec
    from pgnm.data.wds import WebDatasetLoader

    spec = AugmentSpec(image_size=32, eval_resize=36)
    loader = WebDatasetLoader(tiny_shards, "val", 4, False, spec, num_workers=1,
                              heap_mmap_threshold_kib=256)
    next(iter(loader))
    assert heap._applied == 256 * 1024
