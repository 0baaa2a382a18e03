"""Configs by name: ``--config pretrain/smoke`` where no file ``pretrain/smoke`` exists.

The YAML files of the checkout's ``configs/`` travel with the package as ``pgnm.configs``
(``pyproject.toml`` maps that package onto ``configs/``), so a wheel install has them too. A
config path that does not exist is looked up there: ``pretrain/smoke``, ``pretrain/smoke.yaml``
and ``configs/pretrain/smoke.yaml`` all name ``configs/pretrain/smoke.yaml`` (the last form is
what the few-shot configs write for their stages, so they resolve outside a checkout too). An
existing file always wins, as before.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from pgnm._yaml import ConfigError

SUFFIX = ".yaml"


def config_root() -> Path | None:
    """The shipped configs folder: ``pgnm.configs`` as installed (a wheel's or an editable
    install's), else the ``configs/`` beside the package in a checkout nobody installed."""
    try:
        root = importlib.resources.files("pgnm.configs")
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[1] / "configs"
    root = Path(str(root))  # both installs keep the files on disk
    return root if root.is_dir() else None


def config_names() -> list[str]:
    """Every shipped config, as ``--config`` takes it: ``pretrain/smoke``, ``preview``, ..."""
    root = config_root()
    if root is None:
        return []
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*" + SUFFIX))


def resolve_config(path: str | Path) -> Path:
    """``path`` if it exists, else the shipped config of that name; a :class:`ConfigError`
    naming the available configs when it is neither."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    name = given.as_posix().removeprefix("./").removeprefix("configs/")
    if not name.endswith(SUFFIX):
        name += SUFFIX
    root = config_root()
    if root is not None and (root / name).is_file():
        return root / name
    names = ", ".join(config_names()) or "none installed"
    raise ConfigError(f"config file not found: {path} (nor a config name; names: {names})")
