"""Walk a model back to its origins: fine-tuned model -> heated model -> pretraining run ->
data manifest and config. Each hop follows the ``pgnm.source_model_uri`` tag that fine-tuning
puts on its model version."""

from __future__ import annotations

import re

from pgnm.errors import ConfigError
from pgnm.names import Tag
from pgnm.tracking.store import mlflow_client

# The run parameters a reader of the chain wants to see, per stage (all are in MLflow anyway).
SHOWN_PARAMS = {
    "pretrain": ("model.arch", "objective.name", "mask.grid", "mask.kernel_size", "mask.sigma",
                 "optim.lr", "schedule.epochs"),
    "finetune": ("model.arch", "optim.lr", "schedule.epochs"),
}
SHOWN_METRICS = ("plain/top1", "plain/f1_macro", "masked/top1")


def _version(client, uri: str):  # noqa: ANN001, ANN202 - MlflowClient -> ModelVersion
    match = re.match(r"models:/([^/@]+)(?:@(.+)|/(\d+))$", uri)
    if not match:
        raise ConfigError(f"{uri}: expected models:/<name>@<alias> or models:/<name>/<version>")
    name, alias, number = match.groups()
    return (
        client.get_model_version_by_alias(name, alias)
        if alias
        else client.get_model_version(name, number)
    )


def lineage(uri: str, tracking_uri: str) -> list[dict]:
    """One entry per model in the chain, newest first."""
    client = mlflow_client(tracking_uri)
    chain: list[dict] = []
    seen: set[str] = set()
    while uri and uri.startswith("models:/") and uri not in seen:
        seen.add(uri)
        version = _version(client, uri)
        run = client.get_run(version.run_id)
        params, tags = run.data.params, run.data.tags
        chain.append(
            {
                "model": f"models:/{version.name}/{version.version}",
                "stage": version.tags.get(Tag.STAGE, tags.get(Tag.STAGE, "?")),
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "run_status": run.info.status,
                "baseline": tags.get(Tag.BASELINE) == "true",
                "data_manifest": tags.get(Tag.DATA_PLAN_HASH),
                "data_samples": tags.get(Tag.DATA_SAMPLES),
                "params": {k: params[k] for k in SHOWN_PARAMS.get(tags.get(Tag.STAGE, ""), ())
                           if k in params},
                "data_root": params.get("data.root"),
                "metrics": {k: run.data.metrics[k] for k in SHOWN_METRICS if k in run.data.metrics},
                "source_model_uri": version.tags.get(Tag.SOURCE_MODEL_URI),
                # set when a Ray Tune search picked this model (pgnm/tune)
                "search_run_id": version.tags.get(Tag.TUNE_SEARCH_RUN_ID),
                "search_trial": version.tags.get(Tag.TUNE_TRIAL_ID),
            }
        )
        uri = chain[-1]["source_model_uri"] or ""
    if uri and not uri.startswith("models:/"):
        chain.append({"model": uri, "stage": "file", "run_id": None})
    return chain
