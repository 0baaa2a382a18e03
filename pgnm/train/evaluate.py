"""Per-epoch evaluation and the mask gallery.

Two variants for a PGNM model (one for a plain classifier):

* ``plain``: the classifier on clean images, as the heated model will be used downstream;
* ``masked``: the official stage-1 evaluation -- one mask drawn from the running state
  Beta(exp base_alpha, exp base_beta), shared by every image of the batch (the policy itself
  is not called).

Evaluation and the gallery draw masks from a side stream (``pgnm.seeds.separate_stream``), on
the CPU and on the GPU alike, so they do not shift the training run's random stream: a
resumed run stays bit-identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from pgnm.config import Config
from pgnm.errors import DataError
from pgnm.method.diagnostics import policy_diagnostics
from pgnm.method.policy import BetaLogits
from pgnm.method.step import PGNMModel, draw_mask
from pgnm.seeds import derive, separate_stream
from pgnm.train.distributed import World, gather_objects, stop_together
from pgnm.train.metrics import classification_metrics
from pgnm.viz import save_mask_gallery

PROBE_IMAGES, GALLERY_IMAGES = 32, 6  # rank 0's first val images: diagnostics, gallery


def _state_mask_values(model: PGNMModel, batch: int) -> Tensor:
    assert model.policy is not None and model.sampler is not None
    values = model.sampler(model.policy.state_logits(1)).values
    return values.expand(batch, -1)


class Evaluation(NamedTuple):
    metrics: dict[str, float]  # "<variant>/<name>", identical on every rank
    first_images: Tensor | None  # the first few images of this rank's share, for the gallery


@torch.no_grad()
def evaluate(
    model: PGNMModel,
    batches: Iterable[tuple[Tensor, Tensor]],
    world: World,
    seed: int,
    modalities: Sequence[str | None] | None = None,
    keep_images: int = 0,
) -> Evaluation:
    """Metrics over every rank's share of the split; a data error on any rank stops all."""
    was_training = model.training
    model.eval()
    variants = ["plain"] + (["masked"] if model.policy is not None else [])
    dtype = next(model.classifier.parameters()).dtype  # bf16 under engine.precision=bf16
    logits: dict[str, list[Tensor]] = {v: [] for v in variants}
    targets: list[Tensor] = []
    first: Tensor | None = None
    problem: DataError | None = None
    with separate_stream(derive(seed, world.rank), world.device):
        try:
            for images, labels in batches:
                images = images.to(world.device, dtype, non_blocking=True)
                if first is None and keep_images:
                    first = images[:keep_images]
                logits["plain"].append(model.classifier(images).float().cpu())
                if "masked" in logits:
                    masked = model.mask(images, _state_mask_values(model, images.shape[0]))
                    logits["masked"].append(model.classifier(masked).float().cpu())
                targets.append(labels.cpu())
        except DataError as err:
            problem = err
    model.train(was_training)
    stop_together(problem, world, "evaluation")
    local = {v: torch.cat(chunks) for v, chunks in logits.items()}, torch.cat(targets)
    gathered = gather_objects(local)
    all_targets = torch.cat([t for _, t in gathered])
    results = {}
    for variant in variants:
        all_logits = torch.cat([parts[variant] for parts, _ in gathered])
        for name, value in classification_metrics(all_logits, all_targets, modalities).items():
            results[f"{variant}/{name}"] = value
    return Evaluation(results, first)


@torch.no_grad()
def probe_policy(model: PGNMModel, images: Tensor, seed: int) -> dict[str, float]:
    """``policy/*`` diagnostics (``pgnm.method.diagnostics``) of the policy in eval mode on a
    fixed probe batch (the first validation images), with one draw per cell."""
    assert model.policy is not None and model.sampler is not None, "the policy is off"
    was_training = model.training
    model.eval()
    with separate_stream(derive(seed, 1), images.device):
        alpha, beta = model.policy(images)
        logits = BetaLogits(alpha.float(), beta.float())
        draws = model.sampler(logits).values
    model.train(was_training)
    return policy_diagnostics(logits, model.sampler, draws)


@torch.no_grad()
def mask_gallery(
    model: PGNMModel, images: Tensor, path: Path, title: str, mean: float, std: float, seed: int
) -> Path | None:
    """Images, the masks the policy draws for them, and the masked images (Fig. 4 style)."""
    if model.policy is None or model.sampler is None:
        return None
    was_training = model.training
    model.eval()
    with separate_stream(derive(seed), images.device):
        values = draw_mask(model, images).values
    model.train(was_training)
    masks = model.mask(torch.ones_like(images[:, :1]), values)
    return save_mask_gallery(
        images.cpu(), masks.cpu(), model.mask(images, values).cpu(), path, mean, std, title
    )


class PolicyLook(NamedTuple):
    record: dict[str, float]  # policy/* of the epoch record
    gallery: Path | None  # the mask gallery written, where there were images to draw


def look_at_policy(model: PGNMModel, images: Tensor | None, gallery: Path, title: str,
                   config: Config, epoch: int) -> PolicyLook:
    """The policy after an epoch: its running state's mean Beta logits and, given the probe
    ``images`` (rank 0's first val images), the diagnostics and a mask gallery of the first
    ``GALLERY_IMAGES``. Both draw from side streams seeded by ``config.seed + epoch``."""
    assert model.policy is not None, "the policy is off"
    record = {"policy/base_alpha_mean": float(model.policy.base_alpha.mean()),
              "policy/base_beta_mean": float(model.policy.base_beta.mean())}
    if images is None:
        return PolicyLook(record, None)
    seed = config.seed + epoch
    record.update(probe_policy(model, images, seed))
    written = mask_gallery(model, images[:GALLERY_IMAGES], gallery, title, config.data.mean,
                           config.data.std, seed)
    return PolicyLook(record, written)
