"""Models in the MLflow registry, and the heated -> fine-tuned lineage MLflow lacks.

MLflow links a model version to the run that made it, not to the model it was fine-tuned
from. pgnm records that edge three ways: the fine-tune run declares the heated model as a
model *input* (MLflow 3's ``LoggedModelInput``), the run and the new model version carry
``pgnm.source_*`` tags, and ``lineage`` walks them back to the pretraining run, its data
manifest and its config.

Each run opens its LoggedModel when it starts (``open_logged_model``: PENDING, so that its
epoch metrics can name the model they describe) and logs the trained classifier into it at the
end (READY; FAILED if the run ends without it). The model holds an inference export (``pt2``,
with a two-image input example, so the batch size stays free) and, as an extra file, pgnm's
``model.pt`` (state dict, timm architecture, classes, config) that fine-tuning rebuilds and
trains.
"""

from __future__ import annotations

import copy
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pgnm.config import Config
from pgnm.errors import ConfigError
from pgnm.names import Stage, Tag
from pgnm.tracking.store import mlflow_client

MODEL_FILE = "model.pt"
# Stated, not left to MLflow, whose default depends on where it runs (pickle on Databricks).
# pt2 (torch.export) is a graph: ``mlflow.pytorch.load_model`` gives the same logits without
# pgnm or timm importable, and loading it runs no code, where unpickling a model runs whatever
# the file says (MLflow warns on every pickle save). It needs the input example given below.
SERIALIZATION_FORMAT = "pt2"
# The step log_model records the model at. MLflow 3.17 copies the run's metrics of that step
# onto the model, reading them back without their dataset link, and the copy collides with
# the linked original (a UNIQUE constraint in logged_model_metrics: the upload fails). pgnm
# links its epoch metrics itself and logs nothing at step 0 (steps count from 1).
OUTPUT_STEP = 0


@dataclass(frozen=True)
class RegisteredModel:
    """A classifier in the MLflow model registry."""

    model_uri: str  # models:/<name>/<version>
    registered_model: str
    version: str
    alias_uri: str  # models:/<name>@<alias>, which follows the newest version
    model_id: str | None  # MLflow 3's logged-model id (lineage edges point at it)

def registered_name(config: Config, stage: str) -> str:
    if config.tracking.registered_model:
        return config.tracking.registered_model
    if stage == Stage.PRETRAIN:
        kind = "heated"
    else:  # baselines get their own name, so an alias never jumps between the two kinds
        kind = "finetuned" if config.model.init is not None else "baseline"
    return f"pgnm-{kind}-{config.model.arch}"


def model_name(stage: str) -> str:
    """The LoggedModel's name (and its artifact folder): what the stage produces."""
    return "heated" if stage == Stage.PRETRAIN else "finetuned"


def open_logged_model(tracking_uri: str, run_id: str, stage: str,
                      params: dict[str, object]) -> str:
    """The run's LoggedModel id: created PENDING (with the run's config as its params) when a
    run starts; a resumed run finds its own through the run's ``pgnm.model_id`` tag (one that
    a crash left FAILED becomes READY when the resumed run logs the model into it)."""
    client = mlflow_client(tracking_uri)
    run = client.get_run(run_id)
    if run.data.tags.get(Tag.MODEL_ID):
        return run.data.tags[Tag.MODEL_ID]
    model = client.create_logged_model(
        run.info.experiment_id, name=model_name(stage), source_run_id=run_id,
        tags={Tag.STAGE: str(stage)}, params={k: str(v)[:6000] for k, v in params.items()})
    client.set_tag(run_id, Tag.MODEL_ID, model.model_id)
    return model.model_id


def _model_id(version) -> str | None:  # noqa: ANN001 - ModelVersion
    """MLflow 3 leaves ``ModelVersion.model_id`` empty at times; ``source`` holds it."""
    if getattr(version, "model_id", None):
        return version.model_id
    match = re.match(r"models:/(m-[0-9a-f]+)", version.source or "")
    return match.group(1) if match else None


SERVING_PACKAGES = ("torch", "numpy", "pandas", "cloudpickle")  # the pt2 export and pyfunc


def serving_requirements() -> list[str]:
    """What loading the logged export needs, pinned to this environment (MLflow adds itself).

    Given explicitly: MLflow's inference loads each model in a fresh interpreter (about 10 s a
    model) and lists whatever that interpreter imported, triton on a CPU machine included.
    """
    from importlib.metadata import version

    return [f"{package}=={version(package).split('+')[0]}" for package in SERVING_PACKAGES]


def log_classifier(
    tracking_uri: str,
    run_id: str,
    classifier: nn.Module,
    model_file: Path,
    config: Config,
    stage: str,
    tags: dict[str, str],
    model_id: str | None = None,
) -> RegisteredModel:
    """Log the classifier into the run's LoggedModel ``model_id`` (a new one if None), register
    and alias it; returns its URIs and version."""
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    name = registered_name(config, stage)
    export = copy.deepcopy(classifier).float().eval().cpu()
    side = config.data.image_size
    # Two images, not one: torch.export fixes any dimension of size 1, and the inference
    # export should take any batch size.
    example = torch.zeros(2, 3, side, side).numpy()
    portable = model_file.parent / "timm"  # pgnm.train.portable: timm's files and the card
    attached = sorted(portable.iterdir()) if portable.is_dir() else []
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            export,
            name=model_name(stage),
            model_id=model_id,
            step=OUTPUT_STEP,
            serialization_format=SERIALIZATION_FORMAT,
            input_example=example,
            extra_files=[str(model_file), *map(str, attached)],
            registered_model_name=name,
            pip_requirements=serving_requirements(),
        )
    client = mlflow_client(tracking_uri)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, config.tracking.alias, version)
    masked = stage == Stage.PRETRAIN and config.policy.enabled
    version_tags = {
        Tag.STAGE: stage,
        Tag.RUN_ID: run_id,
        Tag.ARCH: config.model.arch,
        Tag.OBJECTIVE: config.objective.name if masked else "ce",
        **tags,
    }
    # The mask describes how a model was trained: a heated model's own; a fine-tuned model
    # trains without one and carries its source's (Tag.SOURCE_MASK, among the source tags).
    if masked:
        version_tags[Tag.MASK] = mask_settings(config)
    for key, value in version_tags.items():
        client.set_model_version_tag(name, version, key, str(value))
    card = portable / "README.md"
    if card.is_file():
        client.update_model_version(name, version, description=card.read_text())
    return RegisteredModel(model_uri=f"models:/{name}/{version}", registered_model=name,
                           version=version, alias_uri=f"models:/{name}@{config.tracking.alias}",
                           model_id=info.model_id)


def mask_settings(config: Config) -> str:
    return _mask_text(config.mask.model_dump())


def _mask_text(mask: dict) -> str:
    return f"grid={mask['grid']},kernel={mask['kernel_size']},sigma={mask['sigma']}"


def _source_mask(path: Path) -> str | None:
    """The mask the model in ``path`` was trained with, from its own pgnm payload; None for a
    timm file, a fine-tuned model or one trained without masks."""
    import yaml

    if not path.is_file():
        return None
    # mmap: only the small entries are read; the weights are read once, by read_weights
    payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(payload, dict) or payload.get("stage") != Stage.PRETRAIN.value:
        return None
    # the source's YAML as written (read leniently: an older pgnm may have other keys)
    source = yaml.safe_load(payload.get("config") or "") or {}
    mask = source.get("mask") or {}
    if not source.get("policy", {}).get("enabled", True) or not {"grid", "kernel_size",
                                                                  "sigma"} <= set(mask):
        return None
    return _mask_text(mask)


def resolve_init(
    uri: str, tracking_uri: str, download_dir: Path | None = None
) -> tuple[Path, dict[str, str]]:
    """A local ``model.pt`` for ``model.init`` and the tags naming where it came from.

    Local paths pass through; ``models:/name@alias``, ``models:/name/3``, ``models:/m-<id>``
    and ``runs:/<run>/<path>`` are downloaded from the tracking store into a fresh folder
    under ``download_dir`` (the run's own directory; the system temp dir if not given).
    """
    if not uri.startswith(("models:/", "runs:/")):
        return Path(uri), _with_source_mask(Path(uri), {Tag.SOURCE_MODEL_URI: uri})
    import mlflow

    client = mlflow_client(tracking_uri)
    tags = {Tag.SOURCE_MODEL_URI: uri}
    named = re.match(r"models:/(?!m-)([^/@]+)(?:@(.+)|/(\d+))$", uri)
    if named:
        name, alias, number = named.groups()
        version = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, number)
        )
        tags.update(
            {
                Tag.SOURCE_MODEL_NAME: name,
                Tag.SOURCE_MODEL_VERSION: version.version,
                Tag.SOURCE_RUN_ID: version.run_id or "",
            }
        )
        if _model_id(version):
            tags[Tag.SOURCE_MODEL_ID] = _model_id(version)
    elif uri.startswith("models:/m-"):
        tags[Tag.SOURCE_MODEL_ID] = uri.split("/")[1]
    # models:/ URIs are resolved through the registry URI, which does not follow tracking_uri.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=_fresh_dir(download_dir)
        )
    )
    found = sorted(local.rglob(MODEL_FILE)) if local.is_dir() else [local]
    if not found:
        raise ConfigError(f"model.init={uri}: no {MODEL_FILE} in the downloaded model")
    return found[0], _with_source_mask(found[0], tags)


def _with_source_mask(path: Path, tags: dict[str, str]) -> dict[str, str]:
    mask = _source_mask(path)
    return {**tags, Tag.SOURCE_MASK: mask} if mask else tags


def _fresh_dir(parent: Path | None) -> str:
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="download-", dir=parent)


def declare_model_input(tracking_uri: str, run_id: str, model_id: str) -> None:
    """MLflow 3's native edge: the fine-tune run consumed this LoggedModel."""
    from mlflow.entities import LoggedModelInput

    mlflow_client(tracking_uri).log_inputs(run_id, models=[LoggedModelInput(model_id=model_id)])
