"""Atomic checkpoints that resume a run exactly, mid-epoch included.

A checkpoint is a directory ``<run>/checkpoints/step-<N>/`` holding

* DeepSpeed's engine checkpoint (weights, optimizer state, ZeRO partitions per rank);
* ``rank-<r>.pt`` per rank: the data loader's position (DALI's serialised reader and RNG
  state, or the webdataset loader's epoch and step) and the torch / numpy / python RNG states;
* ``complete.json``, written last: the step, epoch and position it resumes from.

Everything is written under ``checkpoints/.staging-step-<N>/`` and renamed into place by rank
0 after all ranks have finished writing, so a run killed mid-write leaves only an unfinished
staging folder; the previous checkpoint stays complete and ``resume=auto`` picks it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from pgnm.train.distributed import World, barrier

COMPLETE = "complete.json"
ENGINE_TAG = "engine"


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def complete_checkpoints(root: Path) -> list[Path]:
    """Finished checkpoints under ``root``, oldest first."""
    found = []
    for path in root.glob("step-*"):
        marker = path / COMPLETE
        if marker.is_file():
            found.append((json.loads(marker.read_text())["global_step"], path))
    return [path for _, path in sorted(found)]


def resolve_resume(resume: str, root: Path) -> Path | None:
    """``engine.resume``: auto (newest complete checkpoint, if any), never, or a path."""
    if resume == "never":
        return None
    if resume == "auto":
        done = complete_checkpoints(root)
        return done[-1] if done else None
    path = Path(resume)
    if not (path / COMPLETE).is_file():
        raise FileNotFoundError(
            f"engine.resume={resume}: not a complete checkpoint ({COMPLETE} missing)"
        )
    return path


def save(engine, root: Path, world: World, position: dict, loader_state: dict, keep: int) -> Path:  # noqa: ANN001
    """Write a checkpoint for ``position`` ({global_step, epoch, step_in_epoch}) atomically."""
    name = f"step-{position['global_step']:08d}"
    staging, final = root / f".staging-{name}", root / name
    if world.is_main:
        shutil.rmtree(staging, ignore_errors=True)  # left over from a killed run
        staging.mkdir(parents=True)
    barrier()
    engine.save_checkpoint(str(staging), tag=ENGINE_TAG)
    torch.save({"loader": loader_state, "rng": rng_state()}, staging / f"rank-{world.rank}.pt")
    barrier()
    if world.is_main:
        (staging / COMPLETE).write_text(json.dumps({**position, "world_size": world.world_size}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load(engine, path: Path, world: World) -> tuple[dict, dict]:  # noqa: ANN001
    """Restore engine, RNGs; returns (position, loader state) for this rank."""
    position = json.loads((path / COMPLETE).read_text())
    if position["world_size"] != world.world_size:
        raise ValueError(
            f"{path} was written by {position['world_size']} ranks, this run has "
            f"{world.world_size}; exact resume needs the same world size"
        )
    engine.load_checkpoint(str(path), tag=ENGINE_TAG)
    local = torch.load(path / f"rank-{world.rank}.pt", weights_only=False)
    set_rng_state(local["rng"])
    return position, local["loader"]
