"""The official recipe replayed on the data of finished pgnm runs: the oracle of
``test_equality.py``.

    python tests/train/official_oracle.py RUN_DIR [RUN_DIR ...]              # 1 rank
    torchrun --nproc-per-node 2 tests/train/official_oracle.py RUN_DIR [...]   # 2 ranks

For each run it reads the run's ``config.yaml``, builds the same initial weights as the
trainer, copies them into ``benchmarks/reference_recipe.ReferenceStep`` (plain torch: two SGD
optimisers, ``torch.distributions.Beta``, interpolate + blur, the official loss, DDP over gloo
with more than one rank), seeds the same per-rank random stream, reads the same batches, and
steps the way the official scripts do: StepLR / cosine per epoch in stage 1, LinearLR warm-up
handed over by SequentialLR in stage 2. Rank 0 writes ``oracle.pt`` into the run: after every
step, the loss, both networks' state and both optimisers' momentum buffers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pgnm  # noqa: E402, F401  (before timm)

# isort: split
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.optim import lr_scheduler  # noqa: E402

from benchmarks.reference_recipe import ReferenceStep  # noqa: E402
from pgnm.config import Config, load_config  # noqa: E402
from pgnm.data import build_loader  # noqa: E402
from pgnm.method.step import PGNMModel  # noqa: E402
from pgnm.seeds import seed_training_stream, seed_weights  # noqa: E402


def reference_from(config: Config) -> ReferenceStep:
    """A ReferenceStep holding exactly the weights pgnm's trainer starts from."""
    m = config.mask
    ref = ReferenceStep(config.model.arch, config.model.num_classes, config.policy.enabled,
                        m.grid, m.kernel_size, m.sigma, lr=config.optim.lr)
    seed_weights(config.seed)
    ours = PGNMModel(config)
    ref.model.load_state_dict(ours.classifier.state_dict())
    if ref.policy is not None:
        ref.policy.trunk.load_state_dict(ours.policy.trunk.state_dict())
        ref.policy.alpha.load_state_dict(ours.policy.alpha_head.state_dict())
        ref.policy.beta.load_state_dict(ours.policy.beta_head.state_dict())
        ref.policy.base_alpha = ours.policy.base_alpha.clone()
        ref.policy.base_beta = ours.policy.base_beta.clone()
    return ref


def schedulers(ref: ReferenceStep, config: Config) -> list:
    s = config.schedule
    main = lr_scheduler.StepLR(ref.optimizer, s.step_size, s.gamma)
    if s.warmup_epochs:  # torchvision's reference recipe, as the official stage 2 uses it
        warmup = lr_scheduler.LinearLR(ref.optimizer, s.warmup_start_factor,
                                       total_iters=s.warmup_epochs)
        main = lr_scheduler.SequentialLR(ref.optimizer, [warmup, main], [s.warmup_epochs])
    found = [main]
    if ref.policy_optimizer is not None:
        found.append(lr_scheduler.CosineAnnealingLR(ref.policy_optimizer, s.epochs, s.min_lr))
    return found


def snapshot(ref: ReferenceStep, loss: float) -> dict:
    model = getattr(ref.model, "module", ref.model)
    state = {f"classifier.{k}": v.clone() for k, v in model.state_dict().items()}
    momentum = [ref.optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    if ref.policy is not None:
        policy = getattr(ref.policy, "module", ref.policy)
        for ours, theirs in (("trunk", policy.trunk), ("alpha_head", policy.alpha),
                             ("beta_head", policy.beta)):
            state.update({f"policy.{ours}.{k}": v.clone() for k, v in theirs.state_dict().items()})
        state["policy.base_alpha"] = policy.base_alpha.clone()
        state["policy.base_beta"] = policy.base_beta.clone()
        momentum += [ref.policy_optimizer.state[p]["momentum_buffer"].clone()
                     for p in policy.parameters()]
    return {"loss": loss, "state": state, "momentum": momentum}


def replay(run: Path, rank: int, world: int) -> list[dict]:
    config = load_config(run / "config.yaml")
    ref = reference_from(config)
    steps = schedulers(ref, config)
    loader = build_loader(config, "train", True, rank, world)
    seed_training_stream(config.seed, rank)
    if world > 1:
        ref.wrap_ddp()
    records: list[dict] = []
    for epoch in range(config.schedule.epochs):
        loader.set_epoch(epoch)
        for images, labels in loader:
            records.append(snapshot(ref, ref(images, labels)))
            if len(records) == config.schedule.max_steps:
                return records
        for scheduler in steps:
            scheduler.step()
    return records


def main() -> None:
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    torch.set_num_threads(1)
    for run in sys.argv[1:]:
        if run.startswith("--local_rank"):
            continue
        records = replay(Path(run), rank, world)
        if rank == 0:
            torch.save(records, Path(run) / "oracle.pt")


if __name__ == "__main__":
    main()
