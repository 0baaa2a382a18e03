"""pretrain -> register -> fine-tune from models:/...@alias -> lineage, on the embedded store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from launching import ROOT, summary, train

pytestmark = pytest.mark.slow


def test_heated_to_finetuned_lineage_and_identical_reloads(tiny_shards, heated_run):
    root = heated_run  # the fine-tunes resolve models:/ URIs in the heated run's store
    heated = summary(root, "heated")["registered"]
    assert heated["registered_model"] == "pgnm-heated-resnet10t"
    assert heated["alias_uri"] == "models:/pgnm-heated-resnet10t@current"
    train(
        "finetune.py",
        1,
        tiny_shards,
        root,
        "name=tuned",
        f"model.init={heated['alias_uri']}",
        "schedule.max_steps=2",
    )
    tuned = summary(root, "tuned")["registered"]
    train("finetune.py", 1, tiny_shards, root, "name=baseline", "schedule.max_steps=2")

    store = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgnm.tracking",
            "--tracking-uri",
            store,
            "lineage",
            tuned["alias_uri"],
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    chain = json.loads(result.stdout)
    assert [hop["stage"] for hop in chain] == ["finetune", "pretrain"]
    assert chain[0]["model"] == tuned["model_uri"] and chain[1]["model"] == heated["model_uri"]
    assert chain[0]["source_model_uri"] == heated["alias_uri"]
    assert chain[1]["data_manifest"] and chain[1]["params"]["mask.grid"] == "8"
    assert chain[1]["run_status"] == "FINISHED"

    from mlflow import MlflowClient

    client = MlflowClient(store, registry_uri=store)
    tuned_run = client.get_run(chain[0]["run_id"])
    assert tuned_run.inputs.model_inputs[0].model_id == heated["model_id"]  # MLflow 3 edge
    assert tuned_run.data.tags["pgnm.baseline"] == "false"
    assert tuned_run.data.params["optim.lr"] == "0.01"  # the typed config, flattened
    assert "step/loss" in tuned_run.data.metrics and "plain/f1_macro" in tuned_run.data.metrics
    version = client.get_model_version("pgnm-heated-resnet10t", heated["version"])
    assert version.tags["pgnm.mask"] == "grid=8,kernel=3,sigma=1.0"
    assert version.tags["pgnm.objective"] == "paper"
    assert version.description.startswith("# resnet10t, 6 classes: heated (pretrain)")
    finetuned = client.get_model_version(tuned["registered_model"], tuned["version"])
    assert "pgnm.mask" not in finetuned.tags  # it trained without one: its source's instead
    assert finetuned.tags["pgnm.source_mask"] == "grid=8,kernel=3,sigma=1.0"
    assert finetuned.tags["pgnm.objective"] == "ce"
    assert "fine-tuned without masks" in finetuned.description
    baseline = summary(root, "baseline")
    assert client.get_run(baseline["mlflow_run_id"]).data.tags["pgnm.baseline"] == "true"
    assert baseline["registered"]["registered_model"] == "pgnm-baseline-resnet10t"
    artifacts = {a.path for a in client.list_artifacts(chain[1]["run_id"])}
    assert {"gallery", "config.yaml", "deepspeed_config.json", "data"} <= artifacts


def test_mlflow_and_pgnm_loaders_give_identical_logits(heated_run):
    import mlflow.pytorch

    from pgnm.config import ModelConfig
    from pgnm.models import create_classifier, read_weights
    from pgnm.tracking.registry import SERVING_PACKAGES

    root = heated_run
    registered = summary(root, "heated")["registered"]
    store = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    exported = mlflow.pytorch.load_model(registered["alias_uri"])
    saved = torch.load(root / "heated" / "model" / "model.pt", weights_only=True)
    ours = create_classifier(ModelConfig(arch=saved["arch"], num_classes=saved["num_classes"]))
    ours.load_state_dict(read_weights(root / "heated" / "model" / "model.pt"))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(exported(images), ours.eval()(images))
    # written, not inferred: what the export needs, pinned, and nothing the machine happened to hold
    needs = Path(mlflow.pyfunc.get_model_dependencies(registered["alias_uri"])).read_text()
    assert [line.split("==")[0] for line in needs.split()] == ["mlflow", *SERVING_PACKAGES]
