"""Atomic checkpoints that resume a run exactly, mid-epoch included, and load without pickle.

A checkpoint is a directory ``<run>/checkpoints/step-<N>/`` holding

* DeepSpeed's engine checkpoint (weights, optimizer state, ZeRO partitions per rank);
* ``rank-<r>.pt`` per rank: the data loader's position (DALI's serialised reader and RNG
  state, or the webdataset loader's epoch and step) and the torch / numpy / python RNG states;
* ``complete.json``, written last: the :class:`Position` the run continues from.

Everything is written under ``checkpoints/.staging-step-<N>/`` and renamed into place by rank
0 after all ranks have finished writing, so a run killed mid-write leaves only an unfinished
staging folder; the previous checkpoint stays complete and ``resume=auto`` picks it. That
rename publishes files other ranks wrote, so the folder must be one file system that every
node mounts at the same path: :func:`check_shared` proves it before training, and rank 0
checks that every rank's file is there before publishing.

Loading never runs code: every ``.pt`` file, DeepSpeed's included, is read with
``torch.load(weights_only=True)``, which rebuilds tensors, containers and numbers only. The
rank files hold nothing else; DeepSpeed's optimizer files also hold four small DeepSpeed types
(loss scalers, the ZeRO stage enum, a fragment address), allowed by name for that one read.
Anything else -- a pickle planted in a checkpoint or a Tune checkpoint that would run code --
is refused with a :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgnm.errors import CheckpointError
from pgnm.train.distributed import Placement, World, barrier, gather_objects

COMPLETE = "complete.json"
ENGINE_TAG = "engine"


@dataclass
class EpochSums:
    """Running sums of the epoch in progress (its record is their mean)."""

    loss: float = 0.0
    ce: float = 0.0
    policy_term: float = 0.0
    batches: int = 0


@dataclass
class Position:
    """Where a run stands: what ``complete.json`` holds besides the engine and loader state."""

    global_step: int = 0  # optimizer steps taken
    epoch: int = 0  # the epoch the run continues in
    step_in_epoch: int = 0  # batches of that epoch already consumed
    world_size: int = 1
    tracking_run_id: str | None = None
    images_seen: int = 0
    train_time: float = 0.0
    log_records: int = 0  # lines of metrics.jsonl written up to this point
    sums: EpochSums = field(default_factory=EpochSums)
    grad_accum_steps: int = 1  # with world_size: the micro-batches of one global batch
    elastic: bool = False  # engine.elastic: may resume at another world size

    @classmethod
    def from_json(cls, text: str, where: Path) -> Position:
        try:
            data = json.loads(text)
            return cls(**{**data, "sums": EpochSums(**data.get("sums", {}))})
        except (json.JSONDecodeError, TypeError) as err:
            raise CheckpointError(f"{where}: not a checkpoint position this pgnm can read "
                                  f"({err}); start the run again") from None


# ----------------------------------------------------------------------------- loading safely


def deepspeed_types() -> list[type]:
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def safe_load(path: str | Path, map_location: Any = None, allowed: list[type] | None = None):  # noqa: ANN201
    """``torch.load`` that rebuilds data only; a file that would run code is refused by name."""
    try:
        with torch.serialization.safe_globals(allowed or []):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        named = re.search(r"GLOBAL (\S+)", str(err))
        what = f"it names {named.group(1)}" if named else str(err).splitlines()[0]
        raise CheckpointError(
            f"{path}: refusing to load it: it holds objects other than tensors and plain data, "
            f"which could run code when unpickled ({what})"
        ) from None
    except (OSError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"{path}: cannot be read ({err})") from None


def make_engine_loads_safe(engine) -> None:  # noqa: ANN001 - deepspeed.DeepSpeedEngine
    """Route DeepSpeed's own checkpoint reads through :func:`safe_load`."""
    from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

    current = engine.checkpoint_engine
    if type(current) is not TorchCheckpointEngine:
        raise CheckpointError(
            f"engine.deepspeed_config selects DeepSpeed's {type(current).__name__}; pgnm resumes "
            "only through DeepSpeed's torch checkpoint engine, read with weights_only=True"
        )

    class WeightsOnlyCheckpointEngine(TorchCheckpointEngine):
        def load(self, path: str, map_location=None):  # noqa: ANN001, ANN202
            return safe_load(path, map_location, deepspeed_types())

    current.__class__ = WeightsOnlyCheckpointEngine


# ----------------------------------------------------------------------------- RNG states


def rng_state() -> dict:
    """Every RNG the training stream uses, as tensors and plain data (weights-only loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ----------------------------------------------------------------------------- directories


def position_of(path: Path) -> Position:
    return Position.from_json((path / COMPLETE).read_text(), path / COMPLETE)


def complete_checkpoints(root: Path) -> list[Path]:
    """Finished checkpoints under ``root``, oldest first."""
    found = []
    for path in root.glob("step-*"):
        if (path / COMPLETE).is_file():
            found.append((position_of(path).global_step, path))
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
        raise CheckpointError(
            f"engine.resume={resume}: not a complete checkpoint ({COMPLETE} missing)"
        )
    return path


def _resized_loader_state(path: Path, position: Position, world: World,
                          accumulation: int) -> dict:
    states = [safe_load(path / f"rank-{r}.pt")["loader"] for r in range(position.world_size)]
    windows = states[0]["step"] // position.grad_accum_steps  # whole global batches done
    skipped = [s for state in states for s in state.get("skipped", [])] if world.is_main else []
    return {**states[0], "step": windows * accumulation, "skipped": skipped}


def check_shared(root: Path, world: World, nodes: list[Placement]) -> None:
    """Refuse, on every rank at once, a checkpoint folder that some rank cannot see as rank 0
    writes it (node-local disks): a file rank 0 creates must be visible to all."""
    if world.world_size == 1:
        return
    probe = root / f".shared-{gather_objects(secrets.token_hex(8))[0]}"
    if world.is_main:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_text(nodes[0].host)
    barrier()
    blind = [r for r, seen in enumerate(gather_objects(probe.is_file())) if not seen]
    barrier()
    if world.is_main:
        probe.unlink(missing_ok=True)
    if blind:
        where = ", ".join(f"rank {r} on {nodes[r].host}" for r in blind)
        raise CheckpointError(
            f"{root}: {where} cannot see the checkpoint folder rank 0 writes on {nodes[0].host}; "
            "every rank writes its part of each checkpoint there and rank 0 publishes them "
            "together, so run_dir must be on a file system every node mounts at the same path "
            "(NFS, Lustre, GPFS, ...). Node-local space is for engine.scratch_dir.")


def save(engine, root: Path, world: World, position: Position, loader_state: dict,  # noqa: ANN001
         keep: int) -> Path:
    """Write a checkpoint for ``position`` atomically."""
    name = f"step-{position.global_step:08d}"
    staging, final = root / f".staging-{name}", root / name
    if world.is_main:
        shutil.rmtree(staging, ignore_errors=True)  # left over from a killed run
        staging.mkdir(parents=True)
    barrier()
    engine.save_checkpoint(str(staging), tag=ENGINE_TAG)
    torch.save({"loader": loader_state, "rng": rng_state()}, staging / f"rank-{world.rank}.pt")
    barrier()
    if world.is_main:
        missing = [r for r in range(world.world_size) if not (staging / f"rank-{r}.pt").is_file()]
        if missing:  # the other ranks' writes have not reached rank 0's view of the folder
            raise CheckpointError(f"{staging}: the files of rank(s) {missing} are missing after "
                                  "every rank reported them written; not publishing it (the "
                                  "previous checkpoint stays the newest)")
        (staging / COMPLETE).write_text(json.dumps(asdict(position)))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load(engine, path: Path, world: World, accumulation: int) -> tuple[Position, dict]:  # noqa: ANN001
    """Restore engine and RNGs; returns (position, this rank's loader state). A checkpoint of
    another world size (an elastic run, ``pgnm.train.elastic``) gives every rank the position
    in global batches, and rank 0 the epoch's skips of all the old ranks."""
    position = position_of(path)
    resized = position.world_size != world.world_size
    if resized and not position.elastic:
        raise CheckpointError(
            f"{path} was written by {position.world_size} ranks, this run has "
            f"{world.world_size}; exact resume needs the same world size"
        )
    local_file = path / f"rank-{0 if resized else world.rank}.pt"
    local = safe_load(local_file)  # before DeepSpeed reads anything: refuse early
    if resized:
        local["loader"] = _resized_loader_state(path, position, world, accumulation)
    make_engine_loads_safe(engine)
    loaded, _ = engine.load_checkpoint(str(path), tag=ENGINE_TAG)
    if loaded is None:
        raise CheckpointError(f"{path}: DeepSpeed found no engine checkpoint under {ENGINE_TAG}/")
    if engine.global_steps != position.global_step:
        raise CheckpointError(f"{path}: the engine has taken {engine.global_steps} optimizer "
                              f"steps but {COMPLETE} says {position.global_step}")
    try:
        set_rng_state(local["rng"])
        return position, local["loader"]
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{local_file}: not a pgnm rank state ({err!r})") from None
