"""Few-shot fine-tunes several at a time (``fewshot.workers``), each in its own process.

A few-shot fine-tune is small: at k = 8 most of its seconds go to setting up the run (data,
engine, MLflow), which is single-threaded, and even at k = 256 a resnet10t step on a 32-image
batch uses two CPU threads poorly. Thousands of them one after another leave most of a machine
idle. With ``fewshot.workers = N`` they run in N spawned processes:

- on the CPU each worker takes ``cpu_count // N`` threads (or ``OMP_NUM_THREADS`` where the
  user set it), so the workers never oversubscribe the cores;
- on a GPU machine worker i sees only GPU ``i mod <visible GPUs>`` (``CUDA_VISIBLE_DEVICES``,
  set before CUDA starts in the worker), so 8 workers on 8 GPUs run one fine-tune per GPU.

A fine-tune's result depends only on its recipe, seed and thread count, not on which worker
ran it or when: with the same thread count a worker's row equals the in-process one bit for
bit. Each worker writes all its output, its fine-tunes' and that of the programs it starts,
to ``logs/finetunes-w<i>.log``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgnm.errors import PgnmError

_slot: int | None = None  # this worker's number, in a worker process


@dataclass(frozen=True)
class Job:
    """One fine-tune to run: its row's key fields and what ``run_one`` needs."""

    group: tuple[str, str]  # (init, dataset): the MLflow child run it reports to
    row: dict[str, Any]  # init, dataset, k, trial, seed, lr
    args: tuple  # for ``run_one(*args, log_file)``; picklable


def worker_threads(workers: int) -> int:
    """Threads per worker: the user's ``OMP_NUM_THREADS``, else an equal share of the cores."""
    if "OMP_NUM_THREADS" in os.environ:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, (os.cpu_count() or 1) // workers)


def _start_worker(slots: Any, threads: int, gpus: list[str],  # noqa: ANN401 - a Queue
                  log_dir: Path) -> None:
    global _slot
    _slot = slots.get()
    # Everything the worker prints goes to its log, the output of the compilers and linkers
    # DeepSpeed runs at its first start included: the caller's terminal keeps its progress bar.
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"finetunes-w{_slot}.log", "a")  # noqa: SIM115 - open for the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    # Each fine-tune is a world of one. The parent's rank variables (set by its own first
    # fit, or by a launcher) would make the worker look for peers that do not exist.
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "LOCAL_SIZE",
                 "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(name, None)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # pgnm.train.distributed.share_cpu_cores keeps it
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[_slot % len(gpus)]
    import torch

    torch.set_num_threads(threads)


def _in_worker(run_one: Callable[..., dict], args: tuple, log_dir: Path) -> dict:
    return run_one(*args, log_dir / f"finetunes-w{_slot}.log")


def _visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def run_jobs(jobs: list[Job], workers: int, run_one: Callable[..., dict],
             log_dir: Path) -> Iterator[tuple[Job, dict]]:
    """``(job, run_one(*job.args, log_file))`` for every job, as each finishes: in this process
    for one worker, else in ``workers`` spawned processes. ``run_one`` must be a module-level
    function (it is pickled by name). A failure stops the rest and is raised here."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield job, run_one(*job.args, log_dir / "finetunes.log")
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    slots = context.Queue()
    for slot in range(workers):
        slots.put(slot)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                               initargs=(slots, worker_threads(workers), _visible_gpus(),
                                         log_dir))
    futures = {pool.submit(_in_worker, run_one, job.args, log_dir): job for job in jobs}
    try:
        for future in as_completed(futures):
            job = futures[future]
            try:
                row = future.result()
            except BrokenProcessPool:
                raise PgnmError(f"fewshot.workers: a worker process died (killed, or out of "
                                f"memory) during the fine-tunes; the last one started is at "
                                f"the end of {log_dir}/finetunes-w*.log. Finished fine-tunes "
                                f"are kept: run again to continue, with fewer workers if "
                                f"memory ran out") from None
            yield job, row
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
