"""MLflow for a search: a parent run, a child run per trial, and the stage runs under those.

    search run (pgnm.stage=search)
    └── trial run per trial (pgnm.stage=trial, pgnm.tune.trial_id)   params: the sampled keys
        ├── stage-1 run (pgnm.stage=pretrain)                         the usual training run
        └── stage-2 run (pgnm.stage=finetune)

The trial process opens its trial run and closes it when it finishes. A trial that ASHA stops
is ended from outside, so its process never gets to: :class:`CloseTrialRuns` (a Tune callback
in the driver) closes what it left open -- the trial run as FINISHED with
``pgnm.tune.stopped_early=true``, an interrupted stage run as KILLED (its LoggedModel, never
logged, FAILED), a trial out of retries as FAILED.
"""

from __future__ import annotations

from typing import Any

from ray import tune

from pgnm.names import Tag
from pgnm.tracking.store import experiment_id, mlflow_client
from pgnm.tracking.tracker import fail_pending_model


def _trial_filter(trial_id: str, search_run_id: str) -> str:
    return (f"tags.`{Tag.TUNE_TRIAL_ID}` = '{trial_id}' "
            f"and tags.`{Tag.PARENT_RUN}` = '{search_run_id}'")


def open_search_run(uri: str, experiment: str, run_dir: str, name: str,
                    params: dict[str, Any], tune_experiment: str,
                    reuse: bool = False) -> tuple[str, str]:
    """Create the experiment (in the driver, before trials race to) and the search run; with
    ``reuse`` (a continued search), reopen the latest run of ``tune_experiment`` instead, so
    its trial runs stay its children and no second search run appears."""
    client = mlflow_client(uri)
    exp = experiment_id(client, experiment, uri, run_dir)
    if reuse:
        found = client.search_runs(
            [exp], f"tags.`{Tag.STAGE}` = 'search' and tags.`{Tag.TUNE_EXPERIMENT}` = "
                   f"'{tune_experiment}'", order_by=["attributes.start_time DESC"],
            max_results=1)
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            return exp, run_id
    run_id = client.create_run(exp, run_name=name, tags={
        Tag.STAGE: "search", Tag.TUNE_EXPERIMENT: tune_experiment}).info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, str(value)[:6000])
    return exp, run_id


def open_trial_run(uri: str, exp: str, search_run_id: str, trial_id: str,
                   params: dict[str, Any]) -> tuple[str, bool]:
    """The trial's run, and whether it existed: a crashed trial's retry finds it again."""
    client = mlflow_client(uri)
    found = client.search_runs([exp], _trial_filter(trial_id, search_run_id))
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, Tag.TUNE_RETRIED, "true")
        return run_id, True
    run = client.create_run(exp, run_name=f"trial-{trial_id}",
                            tags={Tag.STAGE: "trial", Tag.TUNE_TRIAL_ID: trial_id,
                                  Tag.PARENT_RUN: search_run_id})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, str(value))
    return run.info.run_id, False


def log_metrics(uri: str, run_id: str, metrics: dict[str, Any], step: int) -> None:
    client = mlflow_client(uri)
    for key, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            client.log_metric(run_id, key, float(value), step=step)


def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    mlflow_client(uri).set_terminated(run_id, status)


def _children(client, exp: str, run_id: str) -> list:  # noqa: ANN001
    return client.search_runs([exp], f"tags.`{Tag.PARENT_RUN}` = '{run_id}'")


def close_trial(uri: str, exp: str, search_run_id: str, trial_id: str, status: str) -> None:
    """End a trial's runs that are still open; ``status`` is the trial run's end state."""
    client = mlflow_client(uri)
    trials = client.search_runs([exp], _trial_filter(trial_id, search_run_id))
    for trial in trials:
        for stage_run in _children(client, exp, trial.info.run_id):
            if stage_run.info.status == "RUNNING":  # its process was stopped mid-stage
                client.set_terminated(stage_run.info.run_id, "KILLED")
                if stage_run.data.tags.get(Tag.MODEL_ID):
                    fail_pending_model(client, stage_run.data.tags[Tag.MODEL_ID])
        if trial.info.status == "RUNNING":
            if status == "FINISHED":
                client.set_tag(trial.info.run_id, Tag.TUNE_STOPPED_EARLY, "true")
            client.set_terminated(trial.info.run_id, status)


class CloseTrialRuns(tune.Callback):
    """Driver-side: no trial's MLflow runs stay RUNNING, however the trial ended."""

    def __init__(self, uri: str, exp: str, search_run_id: str) -> None:
        self.uri, self.exp, self.search_run_id = uri, exp, search_run_id

    def _close(self, trial, status: str) -> None:  # noqa: ANN001 - ray.tune.experiment.Trial
        try:
            close_trial(self.uri, self.exp, self.search_run_id, trial.trial_id, status)
        except Exception as err:  # a tracking hiccup must not fail the search
            print(f"warning: could not close trial {trial.trial_id}'s MLflow runs: {err}")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:  # noqa: ANN001
        self._close(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:  # noqa: ANN001
        self._close(trial, "FAILED")


def register_best(uri: str, name: str, alias: str, model_id: str, source_run_id: str,
                  tags: dict[str, str]) -> dict[str, str]:
    """A new version of ``name`` for the best trial's heated LoggedModel (no re-upload)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    # The registry resolves models:/m-<id> sources through the process's tracking URI.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow_client(uri)
    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # exists already
    model = client.get_logged_model(model_id)
    version = client.create_model_version(
        name, source=model.model_uri, run_id=source_run_id, model_id=model_id,
        tags={Tag.STAGE: "pretrain", Tag.RUN_ID: source_run_id, **tags},
    )
    client.set_registered_model_alias(name, alias, version.version)
    return {"model_uri": f"models:/{name}/{version.version}", "registered_model": name,
            "version": str(version.version), "alias_uri": f"models:/{name}@{alias}",
            "model_id": model_id}
