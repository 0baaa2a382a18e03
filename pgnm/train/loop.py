"""The training loop, shared by stage 1 (pretraining the heated model) and stage 2 (fine-tuning).

Stage 1 (``Stage.PRETRAIN``) trains policy and classifier through the PGNM objective (or the
classifier alone with ``policy.enabled = false``: the baseline); stage 2 (``Stage.FINETUNE``)
trains the classifier on plain CE from ``model.init`` (or from scratch). ``fit`` owns what a
stage implies: fine-tuning turns the policy off whatever the config says.

Read ``fit`` first: prepare (checks, model, data, engine, resume), then epochs of
``train_epoch`` and ``end_epoch`` (evaluation, gallery, log, checkpoint), then ``finish``.
Where records go (metrics.jsonl, MLflow, the registry) is ``RunLog``: start, log, finish.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from pgnm.atomic import atomic_write
from pgnm.config import Config, with_overrides
from pgnm.data import Loader, build_loader, to_device
from pgnm.data.manifest import ClassInfo, load_classes
from pgnm.errors import ConfigError, DataError, PgnmError
from pgnm.method.step import PGNMModel, StepOutput
from pgnm.models import TIMM_PREFIX, initial_weights, load_backbone
from pgnm.names import Stage, Tag
from pgnm.seeds import seed_training_stream, seed_weights
from pgnm.tracking import resolve_init
from pgnm.tracking import tracking_uri as resolve_tracking_uri
from pgnm.train import checkpoint
from pgnm.train.checkpoint import EpochSums, Position
from pgnm.train.distributed import (
    World,
    average_,
    broadcast_from_rank0_,
    gather_objects,
    placements,
    setup,
    stop_together,
    use_node_scratch,
)
from pgnm.train.elastic import ElasticWindow, check_elastic, resume_at
from pgnm.train.engine import build_engine, set_epoch_learning_rates
from pgnm.train.evaluate import PROBE_IMAGES, evaluate, look_at_policy
from pgnm.train.health import Health, host_values
from pgnm.train.result import FitResult
from pgnm.train.runlog import RunLog

SHOWN = ("train/loss", "train/ce", "plain/top1", "plain/f1_macro", "masked/top1", "train/img_s")


@dataclass
class Run:
    """Everything one training run holds on to between epochs."""

    config: Config
    stage: Stage
    world: World
    classes: list[ClassInfo]
    model: PGNMModel
    engine: object  # deepspeed.DeepSpeedEngine
    optimizer: torch.optim.Optimizer
    train_loader: Loader
    val_loader: Loader
    log: RunLog  # metrics.jsonl and MLflow (``log.tracker`` for hooks)
    out_dir: Path
    running_state: list[torch.Tensor]  # averaged over ranks after every optimizer step
    rank0_buffers: list[torch.Tensor]  # BatchNorm statistics etc.: rank 0's before each forward
    window: ElasticWindow | None  # engine.elastic: a micro-batch's noise and statistics
    global_step: int = 0
    start_epoch: int = 0
    images_seen: int = 0
    train_time: float = 0.0
    sums: EpochSums = field(default_factory=EpochSums)  # of the epoch in progress
    device_sums: torch.Tensor | None = None  # the same, accumulating on the device
    health: Health | None = None  # non-finite values seen on the device since the start
    last_eval: dict = field(default_factory=dict)
    stop_requested: bool = False  # set by an epoch hook: finish after this epoch (early stop)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def stopped(self) -> bool:
        max_steps = self.config.schedule.max_steps
        return self.stop_requested or (max_steps is not None and self.global_step >= max_steps)


EpochHook = Callable[["Run", int, dict], None]


def fit(config: Config, stage: Stage, on_epoch: EpochHook | None = None) -> FitResult:
    """Train one stage; ``on_epoch(run, epoch, record)`` runs on every rank after each epoch's
    evaluation and checkpoint (a search uses it to report to Ray Tune)."""
    stage = Stage(stage)
    if not stage.policy_allowed and config.policy.enabled:
        config = with_overrides(config, {"policy.enabled": False}, f"stage {stage}")
    run = prepare(config, stage)
    try:
        for epoch in range(run.start_epoch, run.config.schedule.epochs):
            progress = train_epoch(run, epoch)
            record = end_epoch(run, epoch, progress)
            if on_epoch is not None:
                on_epoch(run, epoch, record)
            if run.stopped:
                break
        return finish(run)
    except BaseException as err:
        # SystemExit(0) from a hook is a requested stop (Tune's scheduler ending a trial)
        requested = isinstance(err, SystemExit) and not err.code
        run.log.fail(requested)
        raise


# ----------------------------------------------------------------------------- set-up


def resolve_config(config: Config, classes: list[ClassInfo]) -> Config:
    """Fill ``model.num_classes`` from the data and refuse settings that cannot work."""
    if config.model.num_classes is None:
        return with_overrides(config, {"model.num_classes": len(classes)}, "classes.json")
    if config.model.num_classes != len(classes):
        raise ConfigError(
            f"model.num_classes={config.model.num_classes} but {config.data.root}/classes.json "
            f"lists {len(classes)} classes; set model.num_classes=null to take the data's"
        )
    return config


def prepare(config: Config, stage: Stage) -> Run:
    scratch = use_node_scratch(config.engine.scratch_dir)  # before any library writes there
    world = setup(config.engine.device, config.engine.deterministic)
    nodes = placements(world, scratch)
    if config.data.root is None:
        raise ConfigError("data.root is not set: point it at shards written by data_tools")
    classes = load_classes(config.data.root)
    config = resolve_config(config, classes)
    out_dir = Path(config.run_dir) / config.name
    if config.engine.checkpoints:  # before anything reads them: every rank must see them
        checkpoint.check_shared(out_dir / "checkpoints", world, nodes)
    if world.is_main:  # which rank ran where: the first thing to read when a node misbehaves
        atomic_write(out_dir / "nodes.json", json.dumps([asdict(n) for n in nodes], indent=1))
    resume_from = checkpoint.resolve_resume(config.engine.resume, out_dir / "checkpoints")
    if resume_from is not None:  # at another world size: the same global batch (elastic)
        config = resume_at(config, checkpoint.position_of(resume_from), world.world_size,
                           str(resume_from))
    check_elastic(config)

    # The same seed on every rank for the weights (and the policy's running state), then a
    # per-rank stream for masks and dropout.
    seed_weights(config.seed)
    model = PGNMModel(config)
    store = resolve_tracking_uri(config.tracking, config.run_dir) if world.is_main else None
    store = gather_objects(store)[0]  # one store for every rank: rank 0's
    source_tags: dict[str, str] = {}
    if config.model.init is not None:  # a file, a models:/ or runs:/ URI or timm's weights
        init: str | Path = config.model.init
        if init.startswith(TIMM_PREFIX):
            source_tags = {Tag.SOURCE_MODEL_URI: init}
        else:  # every rank fetches it
            downloads = Path(config.run_dir) / config.name / "init"
            init, source_tags = resolve_init(init, store, downloads)
        weights = initial_weights(init, config.model.arch)
        if load_backbone(model.classifier, weights, config.model.init) and world.is_main:
            print(f"{config.model.init}: other class count, classification head re-initialised")
    device_id = world.dali_device_id
    train_loader = build_loader(config, "train", True, world.rank, world.world_size, device_id)
    val_loader = build_loader(config, "val", False, world.rank, world.world_size, device_id)
    engine, optimizer = build_engine(model, config, world.world_size)
    seed_training_stream(config.seed, world.rank)

    # What must agree across ranks after every step (policy.share_running_state=false keeps
    # the official per-rank policy state; the REINFORCE baseline is always shared).
    share = model.policy is not None and config.policy.share_running_state
    running_state = model.policy.running_state() if share else []
    if hasattr(model.objective, "baseline"):
        running_state.append(model.objective.baseline)
    # Every other buffer follows rank 0 at each forward, as DDP's broadcast_buffers does in the
    # official code. (DeepSpeed keeps each rank's own, and its checkpoint restores rank 0's
    # on every rank: without this, resuming would change the other ranks' statistics.)
    own_state = {id(t) for t in (model.policy.running_state() if model.policy else [])}
    own_state |= {id(t) for t in running_state}
    rank0_buffers = [b for b in model.buffers() if id(b) not in own_state]
    accumulation = config.optim.grad_accum_steps
    trainable = [p for p in engine.module.parameters() if p.requires_grad]
    window = (ElasticWindow(config.seed, world.rank, world.world_size, accumulation,
                            rank0_buffers, running_state, trainable)
              if config.engine.elastic else None)
    position = Position(world_size=world.world_size)
    if resume_from is not None:
        position, loader_state = checkpoint.load(engine, resume_from, world, accumulation)
        train_loader.load_state_dict(loader_state)
        if world.is_main:
            print(f"resumed from {resume_from} "
                  f"(epoch {position.epoch}, step {position.global_step})"
                  + (f" on {world.world_size} ranks x {accumulation} micro-batches, written "
                     f"by {position.world_size} x {position.grad_accum_steps}"
                     if position.world_size != world.world_size else ""))
    resumed = (position.tracking_run_id, position.log_records) if resume_from else None
    log = RunLog.start(config, stage, world, out_dir, resumed, source_tags)
    return Run(config=config, stage=stage, world=world, classes=classes, model=model,
               engine=engine, optimizer=optimizer, train_loader=train_loader,
               val_loader=val_loader, log=log, out_dir=out_dir, running_state=running_state,
               rank0_buffers=rank0_buffers, window=window,
               global_step=position.global_step, start_epoch=position.epoch,
               images_seen=position.images_seen, train_time=position.train_time,
               sums=position.sums, health=Health(world.device))


# ----------------------------------------------------------------------------- one epoch


def _train_step(run: Run, batches) -> StepOutput | None:  # noqa: ANN001 - batch iterator
    """Next batch and forward pass; None at the end of the epoch. No host reads the device:
    a data error stops every rank at this step (one flag, agreed in host memory), and
    non-finite values are recorded in ``run.health`` for the next look."""
    problem: PgnmError | None = None
    out = None
    micro = run.train_loader.step % run.config.optim.grad_accum_steps
    if run.window is None:
        broadcast_from_rank0_(run.rank0_buffers)  # every rank, every step: collectives paired
    else:
        run.window.before(micro, run.global_step)
    try:
        images, labels = next(batches)
    except StopIteration:
        return None  # every rank runs the same number of batches: all end here together
    except DataError as err:
        problem = err
    if problem is None:
        images, labels = to_device(images, labels, run.world.device, run.dtype)
        out = run.engine(images, labels, step=run.global_step)
        run.health.record(out.loss, out.problems, run.global_step)
    stop_together(problem, run.world, f"step {run.global_step}")
    return out


def _look(run: Run, out: StepOutput | None) -> tuple[float, float]:
    """Read the device once: stop every rank if any saw a NaN/inf, bring the epoch's sums to
    the host (``run.sums``); returns this step's (loss, CE) for the log."""
    step = (out.loss, out.ce) if out is not None else (run.device_sums[0],) * 2
    problems, first, loss, ce, *sums = host_values(*run.health.tensors(), *step,
                                                   *run.device_sums)
    stop_together(run.health.verdict(problems, first, run.world.rank), run.world,
                  f"step {run.global_step}")
    run.sums.loss, run.sums.ce, run.sums.policy_term = sums
    return loss, ce


def save_checkpoint(run: Run, epoch: int, step_in_epoch: int) -> None:
    if not run.config.engine.checkpoints:
        return
    if run.engine.global_steps != run.global_step:  # accumulation windows fill every epoch
        raise RuntimeError(f"DeepSpeed took {run.engine.global_steps} optimizer steps, the "
                           f"loop counted {run.global_step}")
    position = Position(run.global_step, epoch, step_in_epoch, run.world.world_size,
                        run.log.tracker.run_id, run.images_seen, run.train_time, run.log.count,
                        run.sums, run.config.optim.grad_accum_steps, run.config.engine.elastic)
    checkpoint.save(run.engine, run.out_dir / "checkpoints", run.world, position,
                    run.train_loader.state_dict(), run.config.engine.checkpoint_keep)


def train_epoch(run: Run, epoch: int) -> dict:
    """Train until the epoch (or ``schedule.max_steps``) ends; returns its rates and status."""
    config, world, loader = run.config, run.world, run.train_loader
    loader.set_epoch(epoch)  # keeps the position when resuming inside this epoch
    if loader.step == 0:
        run.sums = EpochSums()
    rates = set_epoch_learning_rates(run.optimizer, config, epoch)
    accum, every = config.optim.grad_accum_steps, config.engine.checkpoint_every
    # The epoch's sums on the device, continuing from the host's (a resumed epoch): read at
    # each look, added in the same order as on the host, so a resume cannot change them.
    sums = run.sums
    run.device_sums = torch.tensor([sums.loss, sums.ce, sums.policy_term], dtype=torch.float64,
                                   device=world.device)
    bar = tqdm(total=len(loader), initial=loader.step, disable=not world.is_main, leave=False,
               desc=f"{run.stage} epoch {epoch}", unit="batch", dynamic_ncols=True)
    start, batches, out = time.perf_counter(), iter(loader), None
    while (out := _train_step(run, batches)) is not None:
        if run.window is None:
            run.engine.backward(out.loss)
        else:
            run.window.backward(run.engine, out.loss)  # slots summed in one fixed order
        run.engine.step()
        run.images_seen += out.logits.shape[0] * world.world_size
        policy_term = out.ce.new_zeros(()) if out.policy_term is None else out.policy_term
        run.device_sums += torch.stack([out.loss.detach(), out.ce, policy_term]).double()
        sums.batches += 1
        bar.update()
        if loader.step % accum:
            continue  # inside a gradient-accumulation window: no optimizer step yet
        run.global_step += 1
        if run.window is None:
            average_(run.running_state)
        else:
            run.window.close()  # the running state's mean over every slot of the window
        logging = run.global_step % config.tracking.log_every == 0
        saving = bool(every) and run.global_step % every == 0
        if logging or saving or run.stopped:
            loss, ce = _look(run, out)
            bar.set_postfix(loss=f"{loss:.3f}", ce=f"{ce:.3f}")
        if logging:
            run.log.log({"kind": "step", "step": run.global_step, "epoch": epoch,
                         "loss": loss, "ce": ce,
                         **{f"lr/{k}": v for k, v in rates.items()}})
        if saving:
            run.train_time += time.perf_counter() - start
            start = time.perf_counter()
            save_checkpoint(run, epoch, loader.step)
        if run.stopped:
            break
    bar.close()
    _look(run, None)  # the epoch's record (and its checkpoint) come next
    run.train_time += time.perf_counter() - start
    # the loader rolls over to the next epoch once it has yielded the epoch's last batch
    return {"rates": rates, "finished": loader.step == 0}


def end_epoch(run: Run, epoch: int, progress: dict) -> dict:
    """Evaluate, draw the gallery, log, and checkpoint a finished epoch."""
    config, model, world, sums = run.config, run.model, run.world, run.sums
    evaluation = evaluate(model, run.val_loader, world, config.seed + epoch,
                          [c.modality for c in run.classes], keep_images=PROBE_IMAGES)
    run.last_eval = evaluation.metrics
    n = max(1, sums.batches)
    record = {"kind": "epoch", "epoch": epoch, "step": run.global_step,
              "train/loss": sums.loss / n, "train/ce": sums.ce / n,
              "train/img_s": run.images_seen / max(run.train_time, 1e-9), **run.last_eval,
              **{f"lr/{k}": v for k, v in progress["rates"].items()}}
    if model.policy is not None:
        record["train/policy_term"] = sums.policy_term / n
        images = evaluation.first_images if world.is_main else None  # rank 0's probe batch
        looked = look_at_policy(model, images, run.out_dir / "gallery" / f"epoch-{epoch:03d}.png",
                                f"{config.name}: epoch {epoch}", config, epoch)
        record.update(looked.record)
        if looked.gallery is not None:
            run.log.artifact(looked.gallery, "gallery")
    skipped = _skipped_samples(run, epoch) if config.data.on_bad_sample == "skip" else {}
    if config.data.on_bad_sample == "skip":
        record["data/skipped"] = len(skipped)
    run.log.log(record)
    _stop_past_the_skip_limit(run, epoch, len(skipped))
    if world.is_main:
        shown = {k: round(record[k], 4) for k in SHOWN if k in record}
        print(f"{run.stage} epoch {epoch}: {shown}")
    if progress["finished"] and not run.stopped:
        save_checkpoint(run, epoch + 1, 0)
    return record


def _skipped_samples(run: Run, epoch: int) -> dict[tuple[str, str], str]:
    """The epoch's skipped training samples over every rank, each named in ``skipped.log``."""
    ranks = gather_objects(sorted(run.train_loader.skipped_samples.items()))
    skipped = dict(item for rank in ranks for item in rank)
    if run.world.is_main and skipped:
        with open(run.out_dir / "skipped.log", "a") as log:
            log.writelines(f"epoch {epoch}\t{shard}\t{key}\t{problem}\n"
                           for (shard, key), problem in sorted(skipped.items()))
    return skipped


def _stop_past_the_skip_limit(run: Run, epoch: int, skipped: int) -> None:
    """Every rank holds the same count, so every rank stops here together."""
    seen = len(run.train_loader) * run.config.data.batch_size * run.world.world_size
    limit = run.config.data.max_skipped
    if skipped > limit * seen:
        raise DataError(f"epoch {epoch}: {skipped} of {seen} training samples were skipped "
                        f"({skipped / seen:.1%}), more than data.max_skipped={limit}; they are "
                        f"named in {run.out_dir / 'skipped.log'}")


# ----------------------------------------------------------------------------- outputs


def _rank_spread(tensors: list[torch.Tensor]) -> float:
    """Largest difference of the running state between ranks (0.0 when they agree)."""
    if not tensors:
        return 0.0
    flat = torch.cat([t.detach().double().reshape(-1).cpu() for t in tensors])
    gathered = torch.stack(gather_objects(flat))  # type: ignore[arg-type]
    return float((gathered.max(dim=0).values - gathered.min(dim=0).values).max())


def finish(run: Run) -> FitResult:
    result = FitResult(
        stage=run.stage, name=run.config.name, global_step=run.global_step,
        train_img_s=run.images_seen / max(run.train_time, 1e-9),
        world_size=run.world.world_size, final=run.last_eval, out_dir=run.out_dir,
        running_state_rank_spread=_rank_spread(run.running_state))
    if not run.world.is_main:
        return result
    return run.log.finish(result, run.model, run.config, run.classes)
