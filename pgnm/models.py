"""Classifiers: any timm architecture, built from scratch, and weight transfer between them.

Fine-tuning starts from a heated model, a timm checkpoint or nothing (the baseline). When the
source was trained for a different number of classes, its head cannot be loaded: it is left
freshly initialised and everything else is loaded strictly, so a wrong architecture still fails
loudly instead of silently training from half-random weights.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from pgnm.config import ModelConfig
from pgnm.errors import ConfigError

# Wrappers that prefix parameter names: torch.compile, DDP/DataParallel, DeepSpeed's module.
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


class UnknownArchitectureError(ConfigError):
    pass


def create_classifier(config: ModelConfig) -> nn.Module:
    """A randomly initialised timm classifier with ``config.num_classes`` outputs."""
    if not timm.is_model(config.arch):
        close = difflib.get_close_matches(config.arch, timm.list_models(), n=5)
        raise UnknownArchitectureError(
            f"model.arch={config.arch!r} is not a timm architecture"
            + (f"; similar names: {', '.join(close)}" if close else "")
        )
    if config.num_classes is None:
        raise ValueError("model.num_classes is not resolved (null means: take it from the data)")
    # Weights in the default layout whatever model.channels_last says: the batch layout is
    # PGNMModel's business and the weights' the engine's (pgnm/train/engine.py).
    return timm.create_model(
        config.arch, pretrained=False, num_classes=config.num_classes, drop_rate=config.drop_rate
    )


def strip_wrapper_prefixes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Parameter names as the bare timm model has them."""
    cleaned = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        cleaned[key] = value
    return cleaned


def head_parameter_names(model: nn.Module) -> set[str]:
    """State-dict keys of the classification head (e.g. ``fc.weight``, ``fc.bias``)."""
    head = (
        model.pretrained_cfg.get("classifier", "fc") if hasattr(model, "pretrained_cfg") else "fc"
    )
    return {key for key in model.state_dict() if key.startswith(head + ".")}


def load_backbone(
    model: nn.Module, state_dict: Mapping[str, Tensor], source: str = "checkpoint"
) -> bool:
    """Load ``state_dict`` into ``model``; returns True if the head was left re-initialised.

    The head is skipped only when its shapes differ (another class count). Any other missing,
    unexpected or mis-shaped key raises, naming ``source`` and the keys.
    """
    weights = strip_wrapper_prefixes(state_dict)
    own = model.state_dict()
    head_keys = head_parameter_names(model)
    head_differs = any(k in weights and weights[k].shape != own[k].shape for k in head_keys)
    if head_differs:
        weights = {k: v for k, v in weights.items() if k not in head_keys}
    missing = sorted(set(own) - set(weights) - (head_keys if head_differs else set()))
    unexpected = sorted(set(weights) - set(own))
    mismatched = sorted(k for k in set(weights) & set(own) if weights[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        details = "; ".join(
            f"{label}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatch", mismatched),
            )
            if keys
        )
        raise ConfigError(f"{source} does not fit {type(model).__name__}: {details}")
    model.load_state_dict(weights, strict=not head_differs)
    return head_differs


TIMM_PREFIX = "timm:"


def timm_pretrained(spec: str, arch: str) -> dict[str, Tensor]:
    """The weights of ``model.init=timm:<name>[@<file>]``: timm's pretrained weights for
    ``<name>`` (``resnet50.a1_in1k``: ImageNet-1k, the paper's comparator), fetched by timm
    from the Hugging Face hub, or read from ``<file>`` through timm's
    ``pretrained_cfg_overlay`` on a machine without network access."""
    name, _, file = spec[len(TIMM_PREFIX):].partition("@")
    if name.split(".")[0] != arch:
        raise ConfigError(f"model.init={spec}: weights of {name.split('.')[0]!r}, but "
                          f"model.arch={arch!r}")
    if file and not Path(file).is_file():
        raise ConfigError(f"model.init={spec}: no such file: {file}")
    try:
        model = timm.create_model(name, pretrained=True,
                                  pretrained_cfg_overlay={"file": file} if file else None)
    except Exception as err:  # the hub's and timm's many errors (offline, no such tag)
        raise ConfigError(
            f"model.init={spec}: timm could not load pretrained weights for {name} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); without "
            f"network access, fetch the weights where there is (timm.create_model({name!r}, "
            f"pretrained=True) saves them in the Hugging Face cache) and pass the file: "
            f"model.init=timm:{name}@/path/to/model.safetensors") from None
    return model.state_dict()


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a heated model, a training checkpoint or a timm/torchvision file.

    Accepts ``.safetensors``, or a torch file holding the state dict itself or under one of
    the keys ``state_dict``, ``model`` (the official code's checkpoints) or ``classifier``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.init: no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    payload = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "classifier"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not isinstance(payload, dict) or not all(isinstance(v, Tensor) for v in payload.values()):
        raise ConfigError(f"model.init: {path} holds no state dict of tensors")
    return payload


def initial_weights(source: str | Path, arch: str) -> dict[str, Tensor]:
    """The weights a resolved ``model.init`` names: timm's for ``timm:<name>[@<file>]``, else
    the file's (:func:`read_weights`). The one reader of an initialisation, for fine-tunes and
    linear probes alike."""
    spec = str(source)
    return timm_pretrained(spec, arch) if spec.startswith(TIMM_PREFIX) else read_weights(spec)
