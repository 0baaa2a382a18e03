"""An MLflow run that never stops training: logging happens in a background thread.

Rank 0 owns the run; other ranks hold a disabled tracker. Every ``log_*`` call only appends
to a queue. A worker thread sends the queue to MLflow in batches; if the tracking server is
unreachable it warns once, keeps everything, and retries with back-off, so a server that dies
and comes back loses nothing. ``close`` waits (bounded) for the queue to drain; whatever could
not be sent is written to ``<run>/mlflow-fallback.jsonl``, which
``python -m pgnm.tracking import-fallback FILE`` replays into a store later.

Epoch metrics are linked to the run's LoggedModel (``model_id``, created when the run starts)
and, when computed on a split, to that split's dataset input (``dataset_name`` and
``dataset_digest``); the fallback file keeps both, so a replay keeps the links.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from pgnm.names import Metric
from pgnm.tracking.datasets import SplitDataset

FALLBACK_FILE = "mlflow-fallback.jsonl"
# Fail fast inside MLflow's HTTP client: our thread does the retrying, at its own pace.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@dataclass
class _Item:
    kind: str  # metric | param | artifact | tag | inputs | model | end
    payload: dict

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, **self.payload})


def _send(client, run_id: str, items: list[_Item]) -> None:  # noqa: ANN001 - MlflowClient
    from mlflow.entities import Metric as MlflowMetric
    from mlflow.entities import Param, RunTag

    metrics = [
        MlflowMetric(i.payload["key"], i.payload["value"], i.payload["timestamp"],
                     i.payload["step"], model_id=i.payload.get("model_id"),
                     dataset_name=i.payload.get("dataset_name"),
                     dataset_digest=i.payload.get("dataset_digest"))
        for i in items
        if i.kind == "metric"
    ]
    params = [Param(i.payload["key"], i.payload["value"]) for i in items if i.kind == "param"]
    tags = [RunTag(i.payload["key"], i.payload["value"]) for i in items if i.kind == "tag"]
    for start in range(0, max(len(metrics), len(params), len(tags)), 100):
        client.log_batch(
            run_id,
            metrics=metrics[start : start + 100],
            params=params[start : start + 100],
            tags=tags[start : start + 100],
        )
    for item in items:
        if item.kind == "artifact":
            client.log_artifact(run_id, item.payload["path"], item.payload.get("artifact_path"))
        elif item.kind == "inputs":
            client.log_inputs(run_id, datasets=[SplitDataset(**d).to_input()
                                                for d in item.payload["datasets"]])
        elif item.kind == "model":
            fail_pending_model(client, item.payload["model_id"])
        elif item.kind == "end":
            client.set_terminated(run_id, item.payload["status"])


def fail_pending_model(client, model_id: str) -> None:  # noqa: ANN001 - MlflowClient
    """A LoggedModel whose run ended without logging it is FAILED, not PENDING forever. One
    already finalised is left alone: READY when it was logged before something later failed
    (registering it, say), READY or FAILED from a run that was resumed since."""
    from mlflow.entities import LoggedModelStatus

    if client.get_logged_model(model_id).status == LoggedModelStatus.PENDING:
        client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)


class Tracker:
    """Queue-backed MLflow logging for one run (a no-op when ``enabled`` is false)."""

    def __init__(
        self,
        run_id: str | None,
        tracking_uri: str | None,
        out_dir: Path,
        enabled: bool,
        experiment: str | None = None,
    ) -> None:
        """``run_id=None`` with ``enabled``: offline (the store was unreachable at start);
        everything goes to the fallback file, which creates the run when replayed."""
        self.run_id, self.tracking_uri, self.out_dir = run_id, tracking_uri, out_dir
        self.experiment = experiment
        self.model_id: str | None = None  # the run's LoggedModel, once created (RunLog.start)
        self.datasets: dict[str, SplitDataset] = {}  # split -> its dataset input
        self.enabled = enabled
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._pending: list[_Item] = []
        self._warned = False
        self._already_logged: set[tuple[str, int]] = set()  # (key, step), see skip_logged
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.enabled and run_id is not None:
            for key, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
            self._thread = threading.Thread(target=self._work, name="mlflow-logger", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ producer side

    def _put(self, kind: str, **payload: object) -> None:
        if self.enabled:
            self._queue.put(_Item(kind, payload))

    def log_metrics(self, metrics: dict[str, float], step: int, link: bool = True) -> None:
        """``link``: the values describe the run's model (epoch and test figures). Per-step
        figures stay on the run: MLflow lists every value linked to a model on its page, and
        thousands of steps would bury the epochs there."""
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if (key, step) in self._already_logged:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._put("metric", key=key, value=float(value), step=step, timestamp=now,
                          **(self._links(key) if link else {}))

    def _links(self, key: str) -> dict[str, str]:
        """The model a metric describes and the dataset it was computed on, when known."""
        links = {"model_id": self.model_id} if self.model_id else {}
        dataset = self.datasets.get(Metric.split(key) or "")
        if dataset is not None:
            links.update(dataset_name=dataset.name, dataset_digest=dataset.digest)
        return links

    def log_datasets(self, datasets: list[SplitDataset]) -> None:
        """Declare the run's data inputs; metrics logged from now on link to them. Logging
        them again (a resumed run) adds nothing: MLflow keeps one input per dataset."""
        self.datasets.update({d.split: d for d in datasets})
        self._put("inputs", datasets=[d.to_dict() for d in datasets])

    def fail_model(self) -> None:
        """The run ends without its model (a crash, a stop, a failed upload): the LoggedModel
        it opened becomes FAILED unless it was logged after all (see fail_pending_model)."""
        if self.model_id:
            self._put("model", model_id=self.model_id)

    def skip_logged(self) -> None:
        """A resumed run: from now on, metric values the run already holds at a step are not
        sent again. A resume is exact, so the value it would send is the one already there;
        without this, the steps between the checkpoint and the crash would be logged twice."""
        if not self.enabled or self.run_id is None:
            return
        from pgnm.tracking.store import mlflow_client

        try:
            client = mlflow_client(self.tracking_uri)
            keys = client.get_run(self.run_id).data.metrics
            self._already_logged = {(key, m.step) for key in keys
                                    for m in client.get_metric_history(self.run_id, key)}
        except Exception as err:  # the store is down: resend, at worst twice
            warnings.warn(f"MLflow at {self.tracking_uri}: cannot read the run's metrics "
                          f"({type(err).__name__}); steps may be logged twice", stacklevel=1)

    def log_params(self, params: dict[str, object]) -> None:
        for key, value in params.items():
            self._put("param", key=key, value=str(value)[:6000])

    def set_tags(self, tags: dict[str, object]) -> None:
        for key, value in tags.items():
            self._put("tag", key=key, value=str(value))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._put("artifact", path=str(path), artifact_path=artifact_path)

    # ------------------------------------------------------------------ worker side

    def _work(self) -> None:
        from mlflow import MlflowClient

        client = MlflowClient(self.tracking_uri)
        delay = 1.0
        while not (self._stop.is_set() and self._queue.empty() and not self._pending):
            try:
                while len(self._pending) < 2000:
                    self._pending.append(self._queue.get(timeout=0.2 if not self._pending else 0))
            except queue.Empty:
                pass
            if not self._pending:
                continue
            try:
                _send(client, self.run_id, self._pending)
                self._pending, delay = [], 1.0
                if self._warned:
                    warnings.warn(
                        f"MLflow at {self.tracking_uri} is back; buffered data sent", stacklevel=1
                    )
                    self._warned = False
            except Exception as err:  # server down, network, HTTP 5xx: keep and retry
                if not self._warned:
                    warnings.warn(
                        f"MLflow at {self.tracking_uri} is unreachable ({type(err).__name__}); "
                        "training continues and logging is buffered",
                        stacklevel=1,
                    )
                    self._warned = True
                if self._stop.wait(delay):
                    return  # closing: ``close`` writes what is left to the fallback file
                delay = min(delay * 2, 10.0)

    def close(self, status: str = "FINISHED", timeout: float = 60.0) -> Path | None:
        """End the run; returns the fallback file if some data could not be sent in time."""
        if not self.enabled:
            return None
        self._put("end", status=status)
        if self._thread is None:  # offline from the start
            self._stop.set()
            return self._write_fallback(list(self._drain()))
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            if self._queue.empty() and not self._pending:
                break
            time.sleep(0.1)
        self._stop.set()
        self._thread.join(timeout=15)
        return self._write_fallback(self._pending + list(self._drain()))

    def _write_fallback(self, left: list[_Item]) -> Path | None:
        self.enabled = False
        if not left:
            return None
        path = self.out_dir / FALLBACK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            header = {
                "kind": "run",
                "run_id": self.run_id,
                "tracking_uri": self.tracking_uri,
                "experiment": self.experiment,
            }
            handle.write(json.dumps(header) + "\n")
            for item in left:
                handle.write(item.to_json() + "\n")
        warnings.warn(
            f"{len(left)} MLflow records could not be sent; saved to {path}", stacklevel=1
        )
        return path

    def _drain(self):  # noqa: ANN202 - Iterator[_Item]
        while True:
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return


def replay_fallback(path: str | Path, tracking_uri: str | None = None) -> str:
    """Send a fallback file to MLflow (its own store, or ``tracking_uri``); returns the run id."""
    from mlflow import MlflowClient

    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    header = next(line for line in lines if line["kind"] == "run")
    client = MlflowClient(tracking_uri or header["tracking_uri"])
    run_id = header["run_id"]
    if run_id is None:  # the run never reached the store: create it now
        experiment = client.get_experiment_by_name(header["experiment"] or "Default")
        experiment_id = (
            experiment.experiment_id
            if experiment
            else client.create_experiment(header["experiment"])
        )
        run_id = client.create_run(experiment_id).info.run_id
    items = [_Item(line.pop("kind"), line) for line in lines if line["kind"] != "run"]
    _send(client, run_id, items)
    return run_id
