from __future__ import annotations

import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, roc_auc_score

from pgnm.train.metrics import classification_metrics


def test_perfect_predictions():
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    logits = torch.nn.functional.one_hot(targets, 4).float() * 10
    m = classification_metrics(logits, targets)
    for key in ("top1", "top5", "f1_macro", "balanced_accuracy", "auroc_macro_ovr"):
        assert m[key] == pytest.approx(1.0), key


def test_agrees_with_scikit_learn():
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 5, (300,), generator=g)
    logits = torch.randn(300, 5, generator=g) + 1.5 * torch.nn.functional.one_hot(targets, 5)
    m = classification_metrics(logits, targets)
    predicted = logits.argmax(1).numpy()
    y = targets.numpy()
    assert m["f1_macro"] == pytest.approx(f1_score(y, predicted, average="macro"), abs=1e-5)
    assert m["precision_macro"] == pytest.approx(
        precision_score(y, predicted, average="macro"), abs=1e-5
    )
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted), abs=1e-5)
    probs = logits.softmax(1).numpy()
    assert m["auroc_macro_ovr"] == pytest.approx(
        roc_auc_score(y, probs, multi_class="ovr"), abs=1e-4
    )


def test_per_modality_accuracy_and_absent_classes():
    targets = torch.tensor([0, 0, 1, 1])
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 5.0, 0], [0, 5.0, 0]])
    m = classification_metrics(logits, targets, modalities=["CT", "MR", "US"])
    assert m["top1_CT"] == pytest.approx(0.5) and m["top1_MR"] == pytest.approx(1.0)
    assert "top1_US" not in m  # no US target in this split
    assert m["auroc_macro_ovr"] == m["auroc_macro_ovr"]  # class 2 absent: still a number
