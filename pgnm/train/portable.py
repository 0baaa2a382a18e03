"""A trained classifier as any timm user can load it, with a model card.

``model.pt`` is pgnm's own payload; its class count, class names and normalisation (RadImageNet
grey statistics, the grey channel replicated to three) mean nothing to timm, whose
``resolve_data_config`` would hand back ImageNet's. Next to it, ``model/timm/`` holds the same
weights in timm's Hugging Face layout (``model.safetensors`` and a ``config.json`` with
``architecture``, ``num_classes``, ``label_names`` and a ``pretrained_cfg`` carrying pgnm's
preprocessing), written by timm's own ``save_for_hf``, so that::

    model = timm.create_model("local-dir:<run>/model/timm", pretrained=True)
    config = timm.data.resolve_data_config({}, model=model)   # pgnm's mean, std, sizes

gives pgnm's classifier and pgnm's preprocessing; the folder can also be pushed to a hub as it
is. ``README.md`` there is the model card: what the model is, what it was trained on, how well
it did on which split, where it came from, and what it is not for.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from timm.models import save_for_hf
from torch import nn

from pgnm.config import Config
from pgnm.data.manifest import load_dataset_info
from pgnm.names import Stage

CARD = "README.md"


def preprocessing(config: Config) -> dict:
    """timm's data config for pgnm's evaluation transform: resize to ``eval_resize``, centre
    crop to ``image_size`` (crop_pct = image_size / eval_resize), grey replicated to three
    channels, then pgnm's mean and std on each."""
    data = config.data
    return {"input_size": (3, data.image_size, data.image_size),
            "crop_pct": data.image_size / data.eval_resize, "crop_mode": "center",
            "interpolation": "bilinear", "mean": (data.mean,) * 3, "std": (data.std,) * 3}


def write_portable(classifier: nn.Module, config: Config, classes: list[str], folder: Path,
                   stage: Stage, final: dict[str, float], lineage: dict[str, str]) -> Path:
    """``folder`` with the timm/Hugging Face files and the model card, written beside it and
    renamed into place whole (a crash leaves the old folder or none); returns ``folder``."""
    staged = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staged, ignore_errors=True)
    save_for_hf(classifier, str(staged), safe_serialization=True,
                model_config={"label_names": list(classes), "num_classes": len(classes)},
                data_config=preprocessing(config))
    (staged / CARD).write_text(model_card(config, classes, stage, final, lineage))
    shutil.rmtree(folder, ignore_errors=True)  # a rerun's: replaced as a whole
    os.replace(staged, folder)
    return folder


def model_card(config: Config, classes: list[str], stage: Stage, final: dict[str, float],
               lineage: dict[str, str]) -> str:
    data = load_dataset_info(config.data.root)
    heated = stage == Stage.PRETRAIN
    what = ("the heated (intermediate) classifier of Policy Gradient-Driven Noise Mask "
            "pretraining: trained on images multiplied by masks that a policy network drew, "
            "the policy discarded" if heated else
            "a classifier fine-tuned without masks" + (
                f" from `{config.model.init}`" if config.model.init else " from random weights"))
    mask = config.mask
    lines = [
        f"# {config.model.arch}, {len(classes)} classes: {config.name} ({stage.value})", "",
        f"**What it is:** {what}.", "",
        "## Training", "",
        f"- architecture: timm `{config.model.arch}`",
        f"- stage: {stage.value}, {config.schedule.epochs} epochs, batch {config.data.batch_size}"
        f" per rank, lr {config.optim.lr}",
    ]
    if heated and config.policy.enabled:
        lines.append(f"- objective: {config.objective.name}; mask: grid {mask.grid}, blur "
                     f"kernel {mask.kernel_size}, sigma {mask.sigma}")
    lines += [
        f"- data: `{config.data.root}` (written by {data.source}, plan hash "
        f"`{data.plan_hash[:16]}`), "
        + ", ".join(f"{s} {info.samples}" for s, info in data.splits.items()) + " samples",
        f"- classes: {', '.join(classes)}", "",
        "## Results (validation split, last epoch)", "",
        "| metric | value |", "|---|---|",
        *[f"| {key} | {value:.4f} |" for key, value in sorted(final.items())], "",
        "## Lineage", "",
        *([f"- {key}: `{value}`" for key, value in sorted(lineage.items())] or ["- none"]), "",
        "## Use", "",
        "```python",
        "import timm",
        'model = timm.create_model("local-dir:<this folder>", pretrained=True)',
        "config = timm.data.resolve_data_config({}, model=model)  # pgnm's preprocessing",
        "```", "",
        f"Inputs: grey images replicated to 3 channels, scaled to 0..1, then mean "
        f"{config.data.mean} and std {config.data.std} per channel; evaluated at "
        f"{config.data.image_size} px, centre-cropped from {config.data.eval_resize}.", "",
        "## Intended use and limits", "",
        "For research on transfer learning in medical imaging: an initialisation to fine-tune, "
        "not a diagnostic device. It has not been validated clinically, and its classes are "
        "those of the data above and nothing else. Check it on your own data and population "
        "before relying on it.", "",
    ]
    return "\n".join(lines)
