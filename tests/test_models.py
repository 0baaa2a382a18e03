from __future__ import annotations

import pytest
import torch

from pgnm.config import ModelConfig
from pgnm.models import (
    UnknownArchitectureError,
    create_classifier,
    head_parameter_names,
    load_backbone,
    strip_wrapper_prefixes,
)


@pytest.mark.parametrize(
    ("arch", "params_millions"), [("resnet10t", 4.9), ("resnet18", 11.2), ("resnet50", 23.5)]
)
def test_timm_classifiers_from_scratch(arch, params_millions):
    model = create_classifier(ModelConfig(arch=arch, num_classes=7))
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    backbone = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("fc."))
    assert backbone / 1e6 == pytest.approx(params_millions, rel=0.05)


def test_unknown_architecture_names_the_key():
    with pytest.raises(UnknownArchitectureError, match="model.arch='resnet19'.*resnet18"):
        create_classifier(ModelConfig(arch="resnet19"))


def test_channels_last_leaves_the_weights_to_the_engine():
    # model.channels_last converts batches (PGNMModel); the weights' layout is the engine's
    # choice (channels-last only on CUDA without ZeRO), so a classifier is built in the default.
    model = create_classifier(ModelConfig(arch="resnet10t", num_classes=3, channels_last=True))
    assert model.conv1[0].weight.is_contiguous()


def test_same_class_count_loads_everything():
    source = create_classifier(ModelConfig(arch="resnet10t", num_classes=5))
    target = create_classifier(ModelConfig(arch="resnet10t", num_classes=5))
    assert load_backbone(target, source.state_dict()) is False
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_other_class_count_reinitialises_only_the_head():
    heated = create_classifier(ModelConfig(arch="resnet10t", num_classes=165))
    downstream = create_classifier(ModelConfig(arch="resnet10t", num_classes=2))
    fresh_head = downstream.fc.weight.clone()
    assert load_backbone(downstream, heated.state_dict(), source="heated.pt") is True
    assert head_parameter_names(downstream) == {"fc.weight", "fc.bias"}
    assert torch.equal(downstream.fc.weight, fresh_head)
    assert torch.equal(downstream.conv1[0].weight, heated.conv1[0].weight)


def test_wrapper_prefixes_are_stripped():
    source = create_classifier(ModelConfig(arch="resnet10t", num_classes=3))
    wrapped = {f"module._orig_mod.{k}": v for k, v in source.state_dict().items()}
    assert set(strip_wrapper_prefixes(wrapped)) == set(source.state_dict())
    target = create_classifier(ModelConfig(arch="resnet10t", num_classes=3))
    load_backbone(target, wrapped)
    assert torch.equal(target.fc.weight, source.fc.weight)


def test_wrong_architecture_fails_naming_the_source():
    source = create_classifier(ModelConfig(arch="resnet18", num_classes=3))
    target = create_classifier(ModelConfig(arch="resnet10t", num_classes=3))
    with pytest.raises(ValueError, match="resnet18.pt does not fit ResNet: missing: .*unexpected"):
        load_backbone(target, source.state_dict(), source="resnet18.pt")


def _imagenet_file(tmp_path):
    """A 1000-class resnet10t weights file, standing in for timm's ImageNet download."""
    from safetensors.torch import save_file

    source = create_classifier(ModelConfig(arch="resnet10t", num_classes=1000))
    path = tmp_path / "model.safetensors"
    save_file(source.state_dict(), str(path))
    return source, path


def test_timm_pretrained_weights_from_a_local_file(tmp_path):
    from pgnm.models import timm_pretrained

    source, path = _imagenet_file(tmp_path)
    weights = timm_pretrained(f"timm:resnet10t.c3_in1k@{path}", "resnet10t")
    assert all(torch.equal(weights[k], v) for k, v in source.state_dict().items())
    model = create_classifier(ModelConfig(arch="resnet10t", num_classes=6))
    assert load_backbone(model, weights, "timm")  # the 1000-class head is left re-initialised
    assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)


def test_timm_pretrained_weights_offline_say_how_to_give_a_file(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    from pgnm.config import ConfigError
    from pgnm.models import timm_pretrained

    # The hub's own offline switch (read at import, so set on the module): what a machine
    # without network gets, at once instead of after the connection attempts time out
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf"))  # and nothing cached
    with pytest.raises(ConfigError, match=r"model.init=timm:resnet10t.c3_in1k: timm could not"
                       r".*model.init=timm:resnet10t.c3_in1k@/path/to/model.safetensors"):
        timm_pretrained("timm:resnet10t.c3_in1k", "resnet10t")
    with pytest.raises(ConfigError, match="weights of 'resnet50', but model.arch='resnet10t'"):
        timm_pretrained("timm:resnet50.a1_in1k", "resnet10t")
    with pytest.raises(ConfigError, match="no such file"):
        timm_pretrained(f"timm:resnet10t.c3_in1k@{tmp_path / 'none.safetensors'}", "resnet10t")
