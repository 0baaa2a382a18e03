"""Preview the method: a few PGNM steps on synthetic images, then a mask gallery PNG.

    pgnm preview [--config FILE|NAME] [key=value ...]        # e.g. --config preview
    python launch/preview.py [--config FILE] [key=value ...]

Runs the policy, sampler, mask and objective exactly as training will, with plain SGD on
in-memory synthetic batches (``data.synthetic_images`` images in all), and writes
``<run_dir>/<name>/preview/mask_gallery.png`` and ``summary.json``. The full distributed
trainer is ``pgnm pretrain``'s job; this shows the method's pieces working together.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict:
    import torch
    from tqdm import tqdm

    from pgnm.atomic import atomic_write
    from pgnm.config import config_from_argv, flatten
    from pgnm.data.synthetic import chance_ce, synthetic_batch
    from pgnm.train import PGNMModel
    from pgnm.viz import save_mask_gallery

    config = config_from_argv(argv, __doc__.splitlines()[0], prog)
    torch.manual_seed(config.seed)
    out_dir = Path(config.run_dir) / config.name / "preview"
    model = PGNMModel(config).train()
    lr = config.optim.lr
    groups = [
        {"params": params, "lr": lr * (config.optim.policy_lr_ratio if name == "policy" else 1.0)}
        for name, params in model.param_groups().items()
    ]
    optimizer = torch.optim.SGD(
        groups, lr=lr, momentum=config.optim.momentum, weight_decay=config.optim.weight_decay
    )
    data_rng = torch.Generator().manual_seed(config.seed)
    steps = max(1, config.data.synthetic_images // config.data.batch_size)
    history = []
    start = time.perf_counter()
    with tqdm(range(steps), desc="pgnm preview", unit="step", dynamic_ncols=True) as bar:
        for step in bar:
            images, labels = synthetic_batch(
                config.data.batch_size,
                config.model.num_classes,
                config.data.image_size,
                data_rng,
                config.data.mean,
                config.data.std,
            )
            out = model(images, labels, step=step)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            record = {"step": step, "loss": out.loss.item(), "ce": out.ce.item()}
            if out.policy_term is not None:
                record["policy_term"] = out.policy_term.item()
            history.append(record)
            bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k != "step"})
    elapsed = time.perf_counter() - start

    summary = {
        "steps": steps,
        "images_per_second": steps * config.data.batch_size / elapsed,
        "chance_ce": chance_ce(config.model.num_classes),
        "first": history[0],
        "last": history[-1],
        "config": {k: str(v) for k, v in flatten(config).items()},
    }
    if out.mask_values is not None:
        m = config.mask
        with torch.no_grad():
            masks = model.mask(torch.ones_like(images[:, :1]), out.mask_values)
        gallery = save_mask_gallery(
            images,
            masks,
            out.masked.detach(),
            out_dir / "mask_gallery.png",
            config.data.mean,
            config.data.std,
            title=f"{config.objective.name} objective, G={m.grid}, step {steps - 1}",
        )
        summary["gallery"] = str(gallery)
        summary["mask_mean"] = masks.mean().item()
        summary["mask_std"] = masks.std().item()
    atomic_write(out_dir / "summary.json", json.dumps(summary, indent=2))
    print(
        f"{steps} steps, {summary['images_per_second']:.1f} img/s; "
        f"CE {history[0]['ce']:.3f} -> {history[-1]['ce']:.3f} (chance {summary['chance_ce']:.3f})"
    )
    if "gallery" in summary:
        print(f"mask gallery: {summary['gallery']}")
    return summary

