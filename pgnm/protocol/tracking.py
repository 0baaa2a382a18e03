"""MLflow for the protocol: a parent run, a child per (initialisation, dataset), lineage to models.

The fine-tune runs themselves are opened by ``pgnm.train.fit`` with
``tracking.parent_run_id`` set to their (initialisation, dataset) child, so the UI shows
protocol -> pair -> fine-tunes. Every run that used a model carries its ``pgnm.source_*``
tags and, where the model is a registered LoggedModel, declares it as an MLflow model input.
A tracking store that fails does not stop the protocol: the results are on disk either way.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from pgnm.config import Config
from pgnm.names import Tag
from pgnm.tracking import declare_model_input
from pgnm.tracking import tracking_uri as resolve_tracking_uri
from pgnm.tracking.store import experiment_id, mlflow_client


class ProtocolTracker:
    def __init__(self, config: Config, root: Path) -> None:
        self.config, self.root = config, root
        enabled = config.tracking.enabled
        self.store = resolve_tracking_uri(config.tracking, config.run_dir) if enabled else None
        self.parent_id: str | None = None
        self._client = None

    def _call(self, what: str, fn, *args, **kwargs):  # noqa: ANN001, ANN202
        if self.store is None:
            return None
        try:
            if self._client is None:
                self._client = mlflow_client(self.store)
            return fn(self._client, *args, **kwargs)
        except Exception as err:  # the store is down: the files on disk still hold everything
            warnings.warn(f"MLflow ({what}) failed: {err}", stacklevel=2)
            return None

    def _run(self, name: str, tags: dict[str, str], parent: str | None) -> str | None:
        def create(client) -> str:  # noqa: ANN001
            exp = experiment_id(client, self.config.tracking.experiment, self.store,
                                self.config.run_dir)
            all_tags = {**tags, **({Tag.PARENT_RUN: parent} if parent else {})}
            return client.create_run(exp, run_name=name, tags=all_tags).info.run_id

        return self._call(f"create run {name}", create)

    def _inputs(self, run_id: str | None, inits) -> None:  # noqa: ANN001 - Resolved values
        for init in inits:
            model_id = init.tags.get(Tag.SOURCE_MODEL_ID)
            if run_id and model_id:
                self._call("model input", lambda c, m=model_id: declare_model_input(
                    self.store, run_id, m))

    def start(self, params: dict, resolved: dict, datasets: dict) -> None:
        tags = {Tag.STAGE: "fewshot", **{f"pgnm.fewshot.init.{n}": r.uri or "random"
                                            for n, r in resolved.items()},
                **{f"pgnm.fewshot.dataset.{n}": d["source"] for n, d in datasets.items()}}
        self.parent_id = self._run(self.config.name, tags, self.config.tracking.parent_run_id)
        if self.parent_id is None:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self._call("params", lambda c, s=start: c.log_batch(
                self.parent_id, params=items[s:s + 100]))
        self._inputs(self.parent_id, resolved.values())

    def child(self, init_name: str, dataset: str, init) -> str | None:  # noqa: ANN001
        tags = {Tag.STAGE: "fewshot-pair", Tag.FEWSHOT_INIT: init_name,
                Tag.FEWSHOT_DATASET: dataset, **init.tags}
        run_id = self._run(f"{init_name} / {dataset}", tags, self.parent_id)
        self._inputs(run_id, [init])
        return run_id

    def finish_child(self, run_id: str | None, trials: list[dict]) -> None:
        """Mean test metrics per k (MLflow step = k), then the child run ends."""
        if run_id is None:
            return
        from mlflow.entities import Metric

        from pgnm.protocol.report import summarise

        metrics = []
        for by_init in summarise(trials).values():
            for by_k in by_init.values():
                for k, stats in by_k.items():
                    for name, s in stats.items():
                        for part in ("mean", "ci_low", "ci_high"):
                            metrics.append(Metric(f"test/{name}_{part}", s[part], 0, int(k)))
        for start in range(0, len(metrics), 500):
            self._call("metrics", lambda c, s=start: c.log_batch(
                run_id, metrics=metrics[s:s + 500]))
        self._call("end", lambda c: c.set_terminated(run_id, "FINISHED"))

    def finish(self, files: list[Path], summary: dict) -> None:
        if self.parent_id is None:
            return
        for path in files:
            self._call("artifact", lambda c, p=path: c.log_artifact(self.parent_id, str(p)))
        self._call("end", lambda c: c.set_terminated(self.parent_id, "FINISHED"))

    def fail(self) -> None:
        if self.parent_id is not None:
            self._call("end", lambda c: c.set_terminated(self.parent_id, "FAILED"))

    @staticmethod
    def declare_input(tracker, model_id: str | None) -> None:  # noqa: ANN001 - train Tracker
        """The fine-tune run (opened by ``fit``) consumed this LoggedModel."""
        if model_id and tracker.run_id and tracker.tracking_uri:
            try:
                declare_model_input(tracker.tracking_uri, tracker.run_id, model_id)
            except Exception as err:  # lineage tags still record the edge
                warnings.warn(f"could not declare the model input: {err}", stacklevel=2)
