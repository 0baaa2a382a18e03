"""Wall time and peak memory of a whole process tree (e.g. a Ray Tune search).

    python -m benchmarks.footprint --json OUT.json -- python launch/tune.py --config ...

Samples every ``--interval`` seconds the summed RSS of the command and all its descendants
(Ray's gcs_server, raylet and trial workers included; pages shared between processes are
counted once per process, so this overstates the true footprint a little) and the
machine's used memory, and writes both peaks with the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil


def _tree_rss(root: psutil.Process) -> tuple[int, int]:
    total, count = 0, 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
            count += 1
        except psutil.Error:  # exited between listing and reading
            continue
    return total, count


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    used_before = psutil.virtual_memory().used
    start = time.monotonic()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    peak_rss = peak_procs = peak_used = 0
    while child.poll() is None:
        rss, procs = _tree_rss(root)
        peak_rss, peak_procs = max(peak_rss, rss), max(peak_procs, procs)
        peak_used = max(peak_used, psutil.virtual_memory().used)
        time.sleep(args.interval)
    result = {
        "command": command, "returncode": child.returncode,
        "wall_s": round(time.monotonic() - start, 1),
        "peak_tree_rss_gib": round(peak_rss / 2**30, 2), "peak_processes": peak_procs,
        "peak_machine_used_gib_above_start": round((peak_used - used_before) / 2**30, 2),
        "cpus": os.cpu_count(), "load_avg_end": os.getloadavg(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["returncode"] == 0 else 1)
