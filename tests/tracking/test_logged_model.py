"""MLflow 3 at its level: the run's LoggedModel exists from the start, every epoch metric names
it and the data split it was computed on, the shard set is the run's dataset input, and a run
that ends without its model leaves it FAILED."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from launching import free_port, summary, train

from pgnm.data.manifest import load_dataset_info
from pgnm.names import Tag
from pgnm.tracking.datasets import split_datasets
from pgnm.tracking.registry import SERIALIZATION_FORMAT, open_logged_model
from pgnm.tracking.store import mlflow_client
from pgnm.tracking.tracker import Tracker, replay_fallback


def _store(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"


@pytest.mark.slow  # it reads the shared heated run
def test_epoch_metrics_and_the_shard_set_link_to_the_logged_model(tiny_shards, heated_run):
    registered = summary(heated_run, "heated")["registered"]
    client = mlflow_client(_store(heated_run))
    run_id = summary(heated_run, "heated")["mlflow_run_id"]
    run = client.get_run(run_id)
    model = client.get_logged_model(registered["model_id"])
    assert run.data.tags[Tag.MODEL_ID] == model.model_id  # the one opened at the start
    assert str(model.status) == "READY" and model.source_run_id == run_id
    assert model.params["mask.grid"] == "8"  # the run's config

    data = json.loads((tiny_shards / "dataset.json").read_text())
    digest = data["plan_hash"]  # the manifest's own hash
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {f"{tiny_shards.name}/train", f"{tiny_shards.name}/val"}
    for name, given in inputs.items():
        split = name.split("/")[-1]
        assert [(t.key, t.value) for t in given.tags] == [("mlflow.data.context", split)]
        assert given.dataset.digest == digest
        assert json.loads(given.dataset.source) == {"uri": str(tiny_shards.resolve())}
        profile = json.loads(given.dataset.profile)
        assert profile["samples"] == data["splits"][split]["samples"]
        assert profile["shards"] == len(data["splits"][split]["shards"])
        assert {k: v for k, v in profile.items() if k.endswith(" samples")} == {
            f"{s} samples": info["samples"] for s, info in data["splits"].items()}

    epochs = [json.loads(line) for line in (heated_run / "heated" / "metrics.jsonl").open()
              if '"kind": "epoch"' in line]
    on_model = {}
    for metric in model.metrics:
        on_model.setdefault(metric.key, []).append(metric)
    for key, split in (("plain/top1", "val"), ("masked/f1_macro", "val"), ("train/loss", "train")):
        linked = sorted(on_model[key], key=lambda m: m.step)
        assert [(m.step, m.value) for m in linked] == [(e["step"], e[key]) for e in epochs]
        assert {(m.dataset_name, m.dataset_digest) for m in linked} == {
            (f"{tiny_shards.name}/{split}", digest)}
    assert {m.dataset_name for m in on_model["lr/classifier"]} == {None}  # not from data
    assert not [key for key in on_model if key.startswith("step/")]  # those stay on the run
    searched = client.search_logged_models([run.info.experiment_id],
                                           filter_string=f"source_run_id = '{run_id}'")
    assert [m.model_id for m in searched] == [model.model_id]  # one model, not a second

    # the stated format, and it loads back by the model's own URI with the same logits
    import mlflow.pytorch

    assert SERIALIZATION_FORMAT == "pt2"
    files = {f.path for f in client.list_logged_model_artifacts(model.model_id, "data")}
    assert files == {"data/model.pt2"}
    mlflow.set_tracking_uri(_store(heated_run))
    loaded = mlflow.pytorch.load_model(f"models:/{model.model_id}")
    again = mlflow.pytorch.load_model(registered["model_uri"])
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(images), again(images))


@pytest.mark.slow
def test_fallback_replay_keeps_the_model_and_dataset_links(tiny_shards, tmp_path):
    store = f"sqlite:///{tmp_path / 'store.db'}"
    client = mlflow_client(store)
    run_id = client.create_run(client.create_experiment("pgnm")).info.run_id
    model_id = open_logged_model(store, run_id, "pretrain", {"optim.lr": 0.1})
    assert open_logged_model(store, run_id, "pretrain", {}) == model_id  # a resume finds it
    datasets = split_datasets(tiny_shards, load_dataset_info(tiny_shards), classes=6)

    dead = f"http://127.0.0.1:{free_port()}"  # the store is down for the whole run
    tracker = Tracker(run_id, dead, tmp_path, enabled=True, experiment="pgnm")
    tracker.model_id = model_id
    tracker.log_datasets(datasets)
    for step in (1, 2):
        tracker.log_metrics({"plain/top1": 0.5 * step, "lr/classifier": 0.1}, step=step)
    tracker.fail_model()  # the run crashes: its model never comes
    with pytest.warns(UserWarning, match="could not be sent"):
        fallback = tracker.close("FAILED", timeout=1)

    replay_fallback(fallback, store)
    model = client.get_logged_model(model_id)
    assert str(model.status) == "FAILED"
    val = f"{tiny_shards.name}/val"
    assert sorted((m.key, m.step, m.value, m.dataset_name) for m in model.metrics) == [
        ("lr/classifier", 1, 0.1, None), ("lr/classifier", 2, 0.1, None),
        ("plain/top1", 1, 0.5, val), ("plain/top1", 2, 1.0, val)]
    run = client.get_run(run_id)
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {d.name for d in datasets}
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_a_crashed_run_leaves_its_logged_model_failed(tiny_shards, tmp_path):
    result = train("pretrain.py", 1, tiny_shards, tmp_path, "name=nan", "optim.lr=1e30",
                   "policy.logit_clamp=null", "engine.checkpoints=false", expect_ok=False)
    assert "non-finite value at step" in result.stderr
    client = mlflow_client(_store(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("pgnm").experiment_id])
    assert run.info.status == "FAILED"
    model = client.get_logged_model(run.data.tags[Tag.MODEL_ID])
    assert str(model.status) == "FAILED"  # not PENDING forever
    assert len(run.inputs.dataset_inputs) == 2  # what it trained on is recorded all the same
