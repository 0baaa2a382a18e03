"""End-to-end pretraining images/s: our pipeline vs the reference recipe, on the same images.

* ours: WebDataset shards (written by ``data_tools`` from the generated release) -> DALI CPU
  loader -> the step ``pgnm.train.loop`` runs (``benchmarks.step.ours_step``), faithful
  settings and, separately, the light policy;
* reference: the same PNGs as an ImageFolder tree -> torchvision ``ImageFolder`` + PIL
  transforms in a ``DataLoader`` (one worker per core) -> ``ReferenceStep``.

The first ``warmup`` steps of each pipeline are not timed; the clock then runs over the rest
of ``epochs`` epochs, loading included. Resident memory of the whole process tree is recorded
after each epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import torch

from benchmarks.clock import default_device
from benchmarks.data import _rss_mb
from benchmarks.reference_recipe import ReferenceStep, reference_loader
from benchmarks.step import ours_overrides, ours_step

Step = Callable[[torch.Tensor, torch.Tensor], float]


def time_pretraining(
    epoch_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    step: Step,
    epochs: int,
    warmup: int,
    progress: Callable[[], None] | None = None,
) -> dict:
    seen, images, start, rss = 0, 0, None, []
    for _ in range(epochs):
        for batch, labels in epoch_batches():
            step(batch, labels)
            seen += 1
            if progress is not None:
                progress()
            if seen == warmup:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                start = time.perf_counter()
            elif seen > warmup:
                images += batch.shape[0]
        rss.append(round(_rss_mb(), 1))
    if start is None or images == 0:
        raise ValueError(
            f"{seen} steps in {epochs} epochs leave none to time after {warmup} warm-up steps; "
            "use more images or epochs"
        )
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # the last steps' GPU work belongs to the timed span
    wall = time.perf_counter() - start
    return {"img_s": images / wall, "images": images, "steps": seen, "rss_mb_per_epoch": rss}


def run(
    release_folder: Path,
    shards: Path,
    arch: str,
    size: int,
    grid: int,
    batch: int,
    light_size: int,
    epochs: int,
    warmup: int,
    cores: int,
    progress: Callable[[], None] | None = None,
) -> dict:
    """img/s of ours (faithful and light) and of the reference, one pipeline after another."""
    from pgnm.data import DaliLoader
    from pgnm.data.spec import AugmentSpec

    spec = AugmentSpec(image_size=size, eval_resize=size * 8 // 7)
    device = default_device()
    dali_device = device.index if device.type == "cuda" else None  # DALI decodes on the GPU
    result: dict = {}
    for name, variant in (("ours/pgnm", "pgnm"), ("ours/pgnm_light", "pgnm_light")):
        torch.manual_seed(0)
        step = ours_step(ours_overrides(arch, variant, size, grid, light_size), batch)
        loader = DaliLoader(shards, "train", batch, True, spec, num_threads=cores,
                            device_id=dali_device)
        result[name] = time_pretraining(partial(iter, loader), step, epochs, warmup, progress)
    torch.manual_seed(0)
    reference_step = ReferenceStep(arch, 165, policy=True, grid=grid).to(device)
    reference = reference_loader(release_folder, batch, cores, size)
    result["reference/pgnm"] = time_pretraining(
        lambda: iter(reference), reference_step, epochs, warmup, progress
    )
    return result
