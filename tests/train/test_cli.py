"""The launch scripts' exit: the shutdown's first half runs, the teardown does not."""

from __future__ import annotations

import subprocess
import sys

from launching import ROOT

EXITING = """
import atexit, threading, time
from concurrent.futures import ThreadPoolExecutor
from pgnm.train.cli import leave

pool = ThreadPoolExecutor(2)  # idle workers, as MLflow's artifact downloads leave them
pool.submit(time.sleep, 0).result()
late = threading.Thread(target=lambda: (time.sleep(0.5), print("thread finished", flush=True)))
late.start()  # a non-daemon thread still working: waited for
atexit.register(print, "exit handler ran")
leave(3)
"""


def test_leaving_waits_for_threads_and_runs_exit_handlers_without_hanging():
    result = subprocess.run([sys.executable, "-c", EXITING], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 3, result.stderr[-3000:]
    assert result.stdout.split("\n")[:2] == ["thread finished", "exit handler ran"]
