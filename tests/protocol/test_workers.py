"""Fine-tunes in worker processes: each worker its own slot and share of the cores, and a
failure in one reaches the caller as a clear error, not a hang."""

from __future__ import annotations

import os
import subprocess

import pytest

from pgnm.errors import ConfigError, PgnmError
from pgnm.protocol import workers
from pgnm.protocol.workers import Job, run_jobs


def where_am_i(value: int, log_file) -> dict:  # noqa: ANN001 - a Path
    if value == 13:
        raise ConfigError("fewshot.datasets.x: job 13 is bad")
    if value == 99:
        os._exit(1)  # a worker killed mid fine-tune (out of memory, say)
    if value == 4:  # a program the worker starts (DeepSpeed runs compilers) writes to fd 2
        subprocess.run(["sh", "-c", "echo from-a-linker >&2"], check=True)
    return {"value": value, "log": log_file.name, "threads": os.environ.get("OMP_NUM_THREADS"),
            "rank": os.environ.get("RANK")}


def jobs(values: list[int]) -> list[Job]:
    return [Job(("init", "set"), {"value": v}, (v,)) for v in values]


def test_two_workers_each_take_a_slot_and_half_the_cores(tmp_path, monkeypatch, capfd):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("RANK", "0")  # what the parent's own first fit leaves behind
    done = dict((job.row["value"], row) for job, row in
                run_jobs(jobs(list(range(6))), 2, where_am_i, tmp_path))
    assert sorted(done) == list(range(6))
    assert {row["log"] for row in done.values()} <= {"finetunes-w0.log", "finetunes-w1.log"}
    share = str(max(1, (os.cpu_count() or 1) // 2))
    assert {row["threads"] for row in done.values()} == {share}
    assert {row["rank"] for row in done.values()} == {None}  # each a world of one
    logs = "".join(p.read_text() for p in tmp_path.glob("finetunes-w*.log"))
    assert "from-a-linker" in logs and "from-a-linker" not in capfd.readouterr().err
    one = [row for _, row in run_jobs(jobs([5]), 1, where_am_i, tmp_path)]
    assert one[0]["log"] == "finetunes.log"  # one worker: in this process


def test_a_failing_or_dying_worker_stops_the_run_with_its_reason(tmp_path):
    with pytest.raises(ConfigError, match="job 13 is bad"):
        list(run_jobs(jobs([1, 13, 2, 3]), 2, where_am_i, tmp_path))
    with pytest.raises(PgnmError, match="fewshot.workers: a worker process died"):
        list(run_jobs(jobs([1, 99, 2, 3]), 2, where_am_i, tmp_path))
    assert workers.worker_threads(4) >= 1
