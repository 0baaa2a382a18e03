"""The training loop, shared by stage 1 (pretraining the heated model) and stage 2 (fine-tuning).

The two stages differ only in their config: stage 1 has ``policy.enabled = true`` and trains
policy and classifier through the PGNM objective; stage 2 has ``policy.enabled = false`` and a
``model.init`` (or none, for the baseline) and trains the classifier on plain CE. Read
``fit`` top to bottom: set-up and checks, resume, epochs of steps, evaluation, outputs.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pgnm.config import Config, with_overrides
from pgnm.data import build_loader
from pgnm.data.manifest import load_classes
from pgnm.method import NonFiniteError
from pgnm.models import load_backbone, read_weights
from pgnm.train import checkpoint, outputs
from pgnm.train.distributed import World, average_, first_failing_rank, gather_objects, setup
from pgnm.train.engine import build_engine, set_epoch_learning_rates
from pgnm.train.evaluate import evaluate, mask_gallery
from pgnm.train.model import PGNMModel, StepOutput


class TrainingDiverged(FloatingPointError):
    """A non-finite loss or policy value; the last complete checkpoint is untouched."""


def resolve_config(config: Config, classes: list) -> Config:  # noqa: ANN001 - list[ClassInfo]
    """Fill ``model.num_classes`` from the data and refuse settings that cannot work."""
    if config.model.num_classes is None:
        return with_overrides(
            config, {"model.num_classes": len(classes)}, "the data's classes.json"
        )
    if config.model.num_classes != len(classes):
        raise ValueError(
            f"model.num_classes={config.model.num_classes} but {config.data.root}/classes.json "
            f"lists {len(classes)} classes; set model.num_classes=null to take the data's"
        )
    return config


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _guarded_step(engine, images, labels, step: int, world: World) -> StepOutput:  # noqa: ANN001
    """Forward pass; every rank learns if any rank saw a NaN/inf, and all stop together."""
    problem, out = None, None
    try:
        out = engine(images, labels, step=step)
        if not torch.isfinite(out.loss).item():
            problem = f"loss is {out.loss.item()}"
    except NonFiniteError as err:
        problem = str(err)
    bad_rank = first_failing_rank(problem is not None, world)
    if bad_rank is not None:
        detail = problem if bad_rank == world.rank else "see that rank's message"
        raise TrainingDiverged(f"non-finite value at step {step} on rank {bad_rank}: {detail}")
    return out


def _rank_spread(tensors: list[torch.Tensor]) -> float:
    """Largest difference of the running state between ranks (0.0 when they agree)."""
    if not tensors:
        return 0.0
    flat = torch.cat([t.detach().double().reshape(-1).cpu() for t in tensors])
    gathered = torch.stack(gather_objects(flat))  # type: ignore[arg-type]
    return float((gathered.max(dim=0).values - gathered.min(dim=0).values).max())


def fit(config: Config, stage: str) -> dict:
    world = setup(config.engine.device)
    out_dir = Path(config.run_dir) / config.name
    if config.data.root is None:
        raise ValueError("data.root is not set: point it at shards written by data_tools")
    classes = load_classes(config.data.root)
    config = resolve_config(config, classes)

    # Same seed on every rank for the weights (and the policy's running state), then a
    # per-rank stream for masks and dropout.
    _seed_everything(config.seed)
    model = PGNMModel(config)
    if config.model.init is not None:
        reset = load_backbone(model.classifier, read_weights(config.model.init), config.model.init)
        if reset and world.is_main:
            print(f"{config.model.init}: other class count, classification head re-initialised")
    train_loader = build_loader(
        config, "train", True, world.rank, world.world_size, world.dali_device_id
    )
    val_loader = build_loader(
        config, "val", False, world.rank, world.world_size, world.dali_device_id
    )
    engine, optimizer = build_engine(model, config, world.world_size)
    _seed_everything(config.seed + 1_000 * (world.rank + 1))

    log = outputs.MetricLog(out_dir / "metrics.jsonl", world.is_main)
    position = {"global_step": 0, "epoch": 0}
    resume_from = checkpoint.resolve_resume(config.engine.resume, out_dir / "checkpoints")
    if resume_from is not None:
        position, loader_state = checkpoint.load(engine, resume_from, world)
        train_loader.load_state_dict(loader_state)
        if world.is_main:
            print(
                f"resumed from {resume_from} "
                f"(epoch {position['epoch']}, step {position['global_step']})"
            )

    accum = config.optim.grad_accum_steps
    running_state = model.policy.running_state() if model.policy is not None else []
    if hasattr(model.objective, "baseline"):
        running_state.append(model.objective.baseline)
    dtype = next(model.parameters()).dtype
    modalities = [c.modality for c in classes]
    global_step, max_steps = position["global_step"], config.schedule.max_steps
    images_seen, train_time, eval_metrics = 0, 0.0, {}
    for epoch in range(position["epoch"], config.schedule.epochs):
        train_loader.set_epoch(epoch)
        rates = set_epoch_learning_rates(optimizer, config, epoch)
        sums, micro = {"loss": 0.0, "ce": 0.0, "policy_term": 0.0, "n": 0}, 0
        bar = tqdm(
            total=len(train_loader),
            initial=train_loader.step,
            disable=not world.is_main,
            desc=f"{stage} epoch {epoch}",
            unit="batch",
            dynamic_ncols=True,
            leave=False,
        )
        start = time.perf_counter()
        for images, labels in train_loader:
            images = images.to(world.device, dtype, non_blocking=True)
            labels = labels.to(world.device, non_blocking=True)
            out = _guarded_step(engine, images, labels, global_step, world)
            engine.backward(out.loss)
            engine.step()
            micro += 1
            images_seen += images.shape[0] * world.world_size
            sums["loss"] += out.loss.item()
            sums["ce"] += out.ce.item()
            sums["policy_term"] += out.policy_term.item() if out.policy_term is not None else 0.0
            sums["n"] += 1
            bar.update()
            if micro % accum:
                continue
            global_step += 1
            average_(running_state)
            if world.is_main and global_step % config.tracking.log_every == 0:
                log.log(
                    {
                        "kind": "step",
                        "step": global_step,
                        "epoch": epoch,
                        "loss": out.loss.item(),
                        "ce": out.ce.item(),
                        **{f"lr/{k}": v for k, v in rates.items()},
                    }
                )
            bar.set_postfix(loss=f"{out.loss.item():.3f}", ce=f"{out.ce.item():.3f}")
            every = config.engine.checkpoint_every
            if every and global_step % every == 0:
                here = {
                    "global_step": global_step,
                    "epoch": epoch,
                    "step_in_epoch": train_loader.step,
                }
                checkpoint.save(
                    engine,
                    out_dir / "checkpoints",
                    world,
                    here,
                    train_loader.state_dict(),
                    config.engine.checkpoint_keep,
                )
            if max_steps is not None and global_step >= max_steps:
                break
        bar.close()
        train_time += time.perf_counter() - start
        finished_epoch = train_loader.step == 0 or (
            max_steps is not None and global_step >= max_steps
        )

        eval_metrics = evaluate(model, val_loader, world, config.seed + epoch, modalities)
        n = max(1, sums["n"])
        record = {
            "kind": "epoch",
            "epoch": epoch,
            "step": global_step,
            "train/loss": sums["loss"] / n,
            "train/ce": sums["ce"] / n,
            "train/img_s": images_seen / max(train_time, 1e-9),
            **eval_metrics,
            **{f"lr/{k}": v for k, v in rates.items()},
        }
        if model.policy is not None:
            record["train/policy_term"] = sums["policy_term"] / n
            record["policy/base_alpha_mean"] = float(model.policy.base_alpha.mean())
            record["policy/base_beta_mean"] = float(model.policy.base_beta.mean())
            if world.is_main:
                gallery_images = next(iter(val_loader))[0][:6].to(world.device, dtype)
                mask_gallery(
                    model,
                    gallery_images,
                    out_dir / "gallery" / f"epoch-{epoch:03d}.png",
                    f"{config.name}: epoch {epoch}",
                    config.data.mean,
                    config.data.std,
                    config.seed + epoch,
                )
        log.log(record)
        if world.is_main:
            shown = {
                k: round(v, 4)
                for k, v in record.items()
                if k
                in (
                    "train/loss",
                    "train/ce",
                    "plain/top1",
                    "plain/f1_macro",
                    "masked/top1",
                    "train/img_s",
                )
            }
            print(f"{stage} epoch {epoch}: {shown}")
        if max_steps is not None and global_step >= max_steps:
            break
        if finished_epoch:
            here = {"global_step": global_step, "epoch": epoch + 1, "step_in_epoch": 0}
            checkpoint.save(
                engine,
                out_dir / "checkpoints",
                world,
                here,
                train_loader.state_dict(),
                config.engine.checkpoint_keep,
            )

    summary = {
        "stage": stage,
        "name": config.name,
        "global_step": global_step,
        "train_img_s": images_seen / max(train_time, 1e-9),
        "world_size": world.world_size,
        "final": eval_metrics,
        "out_dir": str(out_dir),
        "running_state_rank_spread": _rank_spread(running_state),
    }
    if world.is_main:
        summary["model"] = str(
            outputs.save_model(model, config, [c.key for c in classes], out_dir, stage)
        )
        curves = outputs.plot_curves(
            log.records(), out_dir / "curves.png", f"{config.name} ({stage})"
        )
        summary["curves"] = str(curves) if curves else None
        outputs.write_summary(out_dir / "summary.json", summary)
    return summary
