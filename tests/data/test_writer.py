"""Writing a shard directory: atomic shard writes under SIGKILL, and a re-run that finishes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from data_tools.verify import verify
from pgnm.data.sources import records_from_radimagenet
from pgnm.data.writer import write_dataset

ROOT = Path(__file__).resolve().parents[2]

# Runs the real writer, slowed down per tar member so a kill lands mid-shard.
SLOW_WRITER = """
import sys, time
from pathlib import Path
import pgnm.data.shards as shards
original = shards._add_member
def slow(tar, name, payload):
    time.sleep(0.02)
    original(tar, name, payload)
shards._add_member = slow
from pgnm.data.sources import records_from_radimagenet
from pgnm.data.writer import write_dataset
src, out = Path(sys.argv[1]), Path(sys.argv[2])
records, classes, _ = records_from_radimagenet(src)
write_dataset(out, records, classes, "radimagenet_to_wds", samples_per_shard=2, workers=1)
"""


def write(src: Path, out: Path) -> None:
    records, classes, _ = records_from_radimagenet(src)
    write_dataset(out, records, classes, "radimagenet_to_wds", samples_per_shard=2, workers=1)


def complete_shards(out: Path) -> list[Path]:
    done = []
    for tar in sorted(out.glob("*/*.tar")):
        sidecar = json.loads(tar.with_suffix(".json").read_text())
        assert sidecar["bytes"] == tar.stat().st_size
        assert sidecar["md5"] == hashlib.md5(tar.read_bytes()).hexdigest()
        done.append(tar)
    return done


def test_sigkill_leaves_only_complete_shards_and_a_rerun_finishes(raw_release, tmp_path):
    src, _ = raw_release
    out = tmp_path / "shards"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(src), str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    # Wait for final-named tars (renamed last, after their index and sidecar): counting
    # sidecars raced the third tar's fsync and rename, and failed under load.
    while len(list(out.glob("*/*.tar"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = complete_shards(out)  # every tar under a final name is whole
    assert 3 <= len(finished) < 16
    assert not (out / "dataset.json").exists()  # the dataset is not marked usable
    write(src, out)
    assert len(complete_shards(out)) == 16
    assert verify(out)["ok"]
