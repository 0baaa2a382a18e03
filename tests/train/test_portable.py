"""The heated model as a plain timm user loads it: the same logits, pgnm's preprocessing, the
class names, and a model card that says what it is."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from timm.data import resolve_data_config

from pgnm.config import ModelConfig
from pgnm.models import create_classifier

pytestmark = pytest.mark.slow  # it reads the shared heated run


def test_timm_loads_the_heated_model_with_pgnms_preprocessing(heated_run):
    model_dir = heated_run / "heated" / "model"
    payload = torch.load(model_dir / "model.pt", weights_only=True)
    ours = create_classifier(ModelConfig(arch=payload["arch"],
                                         num_classes=payload["num_classes"])).eval()
    ours.load_state_dict(payload["state_dict"])
    theirs = timm.create_model(f"local-dir:{model_dir / 'timm'}", pretrained=True).eval()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(theirs(images), ours(images))

    data = resolve_data_config({}, model=theirs)
    config = payload["config"]
    assert data["mean"] == pytest.approx((0.3162,) * 3)
    assert data["std"] == pytest.approx((0.3213,) * 3)
    assert data["input_size"] == (3, 32, 32) and data["crop_pct"] == pytest.approx(32 / 36)
    assert "data:" in config  # the sizes above are the run's, not defaults
    hf = json.loads((model_dir / "timm" / "config.json").read_text())
    assert hf["architecture"] == "resnet10t" and hf["num_classes"] == 6
    assert hf["label_names"] == payload["classes"]

    card = (model_dir / "timm" / "README.md").read_text()
    assert card.startswith("# resnet10t, 6 classes: heated (pretrain)")
    assert "heated (intermediate) classifier" in card and "mask: grid 8" in card
    assert "| plain/top1 |" in card and "mlflow_run_id" in card
    assert "not a diagnostic device" in card
    assert not list(model_dir.glob(".*partial"))
