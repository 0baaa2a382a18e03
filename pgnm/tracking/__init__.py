"""Tracking: MLflow runs (embedded sqlite store by default), the model registry, lineage.

``open_run`` gives rank 0 a :class:`Tracker` whose logging never blocks or stops training;
``registry`` opens a run's LoggedModel, logs and registers models and resolves ``models:/``
URIs for fine-tuning; ``datasets`` describes the shard set as dataset inputs;
``lineage`` walks fine-tuned -> heated -> pretraining run -> data.
"""

from pgnm.tracking.datasets import split_datasets
from pgnm.tracking.registry import (
    declare_model_input,
    log_classifier,
    open_logged_model,
    resolve_init,
)
from pgnm.tracking.store import open_run, tracking_uri
from pgnm.tracking.tracker import Tracker, replay_fallback

__all__ = [
    "Tracker",
    "declare_model_input",
    "log_classifier",
    "open_logged_model",
    "open_run",
    "replay_fallback",
    "resolve_init",
    "split_datasets",
    "tracking_uri",
]
