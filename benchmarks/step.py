"""Training-step time: ours vs the reference recipe, baseline vs PGNM vs light PGNM.

Ours is the step ``pgnm.train.loop`` runs: ``PGNMModel`` inside the DeepSpeed engine of
``pgnm.train.engine`` (a world of one), ``engine(images, labels)``, ``engine.backward``,
``engine.step``, one ``.item()``. Variants:

* ``baseline``: classifier alone, plain CE (``policy.enabled=false``);
* ``pgnm``: faithful settings (``objective.name=paper``, the policy sees the full crop);
* ``pgnm_light``: the same with ``policy.input_size`` set (the policy sees a downsampled view);
* ``pgnm_plain`` (for information): ``pgnm`` without the engine -- the same module and SGD
  parameter groups, plain ``loss.backward()`` and ``optimizer.step()``. The difference is what
  DeepSpeed costs in a world of one (it flattens, all-reduces and copies back every gradient).

All of ours run with ``model.channels_last=true`` (a layout choice, same arithmetic): the
classifier, the policy trunk and each batch in NHWC, which oneDNN runs faster on CPU.

The reference (``reference_recipe.ReferenceStep``) runs ``baseline`` and ``pgnm``. All variants
of one backbone are built up front and timed round-robin (one step of each per round), so a
slow spell of a shared machine hits all of them alike; each reports the median of its rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.clock import default_device, timed_ms
from benchmarks.reference_recipe import ReferenceStep

OURS = ("baseline", "pgnm", "pgnm_light", "pgnm_plain")
REFERENCE = ("baseline", "pgnm")
Step = Callable[[torch.Tensor, torch.Tensor], object]


def ours_overrides(arch: str, variant: str, size: int, grid: int, light_size: int) -> list[str]:
    overrides = [
        f"model.arch={arch}",
        "model.num_classes=165",
        f"data.image_size={size}",
        f"mask.grid={grid}",
        "objective.name=paper",
        "engine.precision=fp32",
        "model.channels_last=true",
    ]
    if variant == "baseline":
        overrides.append("policy.enabled=false")
    elif variant == "pgnm_light":
        overrides.append(f"policy.input_size={light_size}")
    elif variant not in ("pgnm", "pgnm_plain"):
        raise ValueError(f"unknown step variant {variant!r}; choose from {OURS}")
    return overrides


def _plain_step(model: torch.nn.Module, config, device: torch.device) -> Step:  # noqa: ANN001
    from pgnm.data import to_device
    from pgnm.train.engine import param_groups, set_epoch_learning_rates

    o = config.optim
    optimizer = torch.optim.SGD(
        param_groups(model, config), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
    )
    set_epoch_learning_rates(optimizer, config, 0)
    model.train()
    state = {"step": 0}

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images, labels = to_device(images, labels, device, torch.float32)
        out = model(images, labels, step=state["step"])
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        state["step"] += 1
        return out.loss

    return step


def ours_step(overrides: list[str], batch: int, plain: bool = False) -> Step:
    """The loop's step over a fresh PGNMModel in a DeepSpeed engine (world of one);
    ``plain``: the same module and optimiser groups without the engine."""
    from pgnm.config import load_config
    from pgnm.data import to_device
    from pgnm.method.step import PGNMModel
    from pgnm.train.distributed import setup
    from pgnm.train.engine import build_engine

    config = load_config(overrides=[*overrides, f"data.batch_size={batch}"])
    world = setup(config.engine.device)
    model = PGNMModel(config).to(world.device)
    if plain:
        return _plain_step(model, config, world.device)
    engine, _ = build_engine(model, config, world_size=1)
    engine.train()
    state = {"step": 0}
    dtype = next(model.parameters()).dtype

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images, labels = to_device(images, labels, engine.device, dtype)  # as the loop does
        out = engine(images, labels, step=state["step"])
        engine.backward(out.loss)
        engine.step()
        state["step"] += 1
        return out.loss  # no host read: the clock waits for the GPU (benchmarks.clock)

    return step


def build_steps(arch: str, size: int, grid: int, batch: int, light_size: int,
                extra: tuple[str, ...] = ()) -> dict[str, Step]:
    """Every variant, ours on the device ``setup`` picks and the reference beside them."""
    steps: dict[str, Step] = {}
    for variant in OURS:
        overrides = [*ours_overrides(arch, variant, size, grid, light_size), *extra]
        steps[f"ours/{variant}"] = ours_step(overrides, batch, plain=variant == "pgnm_plain")
    for variant in REFERENCE:
        policy = variant == "pgnm"
        steps[f"reference/{variant}"] = ReferenceStep(arch, 165, policy=policy,
                                                      grid=grid).to(default_device())
    return steps


def time_steps(
    steps: dict[str, Step],
    images: torch.Tensor,
    labels: torch.Tensor,
    repeats: int,
    warmup: int,
    progress: Callable[[], None] | None = None,
) -> dict[str, dict]:
    """Median ms per step of each variant, timed round-robin after ``warmup`` rounds."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    device = default_device()
    for round_ in range(warmup + repeats):
        for name, step in steps.items():
            cpu0 = time.process_time()
            ms = timed_ms(lambda step=step: step(images, labels), device)
            if round_ >= warmup:
                times[name].append(ms)
                cpu[name].append(1e3 * (time.process_time() - cpu0))
        if progress is not None:
            progress()
    # CPU ms (all threads of this process) is reported beside wall time: on a shared machine
    # it is inflated less by other processes than wall time is.
    return {
        name: {
            "median_ms": statistics.median(values),
            "min_ms": min(values),
            "max_ms": max(values),
            "median_cpu_ms": statistics.median(cpu[name]),
            "repeats": len(values),
        }
        for name, values in times.items()
    }


def run_backbone(
    arch: str,
    size: int,
    grid: int,
    batch: int,
    light_size: int,
    repeats: int,
    warmup: int,
    progress: Callable[[], None] | None = None,
    extra: tuple[str, ...] = (),
) -> dict[str, dict]:
    """Every variant's step time for one backbone, on the same batch (grey replicated to three
    channels, as the loaders give it; ``extra``: config overrides for ours, e.g. bf16)."""
    torch.manual_seed(0)
    steps = build_steps(arch, size, grid, batch, light_size, extra)
    images = torch.randn(batch, 1, size, size).expand(-1, 3, -1, -1)
    labels = torch.randint(0, 165, (batch,))
    return time_steps(steps, images, labels, repeats, warmup, progress)
