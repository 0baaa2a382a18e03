"""Hyperparameter search with Ray Tune over real PGNM training runs.

``run_search(config)`` is the whole interface (``launch/tune.py`` calls it). Read ``search.py``
(Ray, scheduler, MLflow parent run), then ``trial.py`` (what one trial does), ``space.py`` (the
YAML search space), ``workers.py`` (one rank or a Ray Train job per trial), ``runs.py``
(MLflow runs) and ``outputs.py`` (best config, table, plot, registry).
"""

from pgnm.tune.search import check, run_search

__all__ = ["check", "run_search"]
