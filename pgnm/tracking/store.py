"""Where runs go: the embedded sqlite store by default, any MLflow tracking URI otherwise.

``tracking.uri`` wins, then ``$MLFLOW_TRACKING_URI``, then an embedded store created on first
use under the run directory: ``<run_dir>/mlflow/mlflow.db`` (runs, params, metrics, model
registry) and ``<run_dir>/mlflow/artifacts/`` (galleries, models). Open it with
``mlflow ui --backend-store-uri sqlite:///<run_dir>/mlflow/mlflow.db --host 127.0.0.1``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from pgnm.config import Config, TrackingConfig
from pgnm.names import Tag
from pgnm.tracking.tracker import _HTTP_DEFAULTS, Tracker


def tracking_uri(config: TrackingConfig, run_dir: str | Path) -> str:
    if config.uri:
        return config.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = Path(run_dir).resolve() / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def mlflow_client(uri: str):  # noqa: ANN201 - mlflow.MlflowClient, imported lazily
    """A client whose tracking and registry are both ``uri``.

    Without an explicit ``registry_uri`` a client follows $MLFLOW_REGISTRY_URI, which
    ``mlflow.set_registry_uri`` exports for the whole process: after one in-process run, every
    later client would look up models in that run's store.
    """
    from mlflow import MlflowClient

    return MlflowClient(uri, registry_uri=uri)


def _local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def experiment_id(client, name: str, uri: str, run_dir: str | Path) -> str:  # noqa: ANN001
    """The experiment's id, creating it (artifacts beside the embedded store) if needed."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if _local_store(uri):  # a server decides its own artifact root
        location = (Path(run_dir).resolve() / "mlflow" / "artifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def open_run(
    config: Config, stage: str, out_dir: Path, resume_run_id: str | None, tags: dict[str, str]
) -> Tracker:
    """Rank 0's tracker: the resumed run, or a new one in ``tracking.experiment``.

    An unreachable store does not stop training: the tracker then works offline and leaves
    everything in the fallback file (see ``tracker.py``).
    """
    if not config.tracking.enabled:
        return Tracker(None, None, out_dir, enabled=False)
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow import MlflowClient

    uri = tracking_uri(config.tracking, config.run_dir)
    try:
        client = MlflowClient(uri)
        if resume_run_id is not None:
            client.update_run(resume_run_id, status="RUNNING")
            run_id = resume_run_id
        else:
            exp = experiment_id(client, config.tracking.experiment, uri, config.run_dir)
            if config.tracking.parent_run_id:  # MLflow's own nesting tag: the UI shows a tree
                tags = {**tags, Tag.PARENT_RUN: config.tracking.parent_run_id}
            run_id = client.create_run(
                exp, run_name=config.name, tags={Tag.STAGE: str(stage), **tags}
            ).info.run_id
    except Exception as err:  # the store is down or unreachable: train anyway
        warnings.warn(f"MLflow at {uri} is unreachable ({err}); logging offline", stacklevel=1)
        run_id = None
    return Tracker(run_id, uri, out_dir, enabled=True, experiment=config.tracking.experiment)
