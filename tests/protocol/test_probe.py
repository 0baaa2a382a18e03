import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.preprocessing import StandardScaler

from pgnm.protocol.probe import logistic_probe, pixel_featuriser
from pgnm.protocol.report import sanity


def _blobs(rng, labels, dims=5):
    return rng.normal(size=(len(labels), dims)) + labels[:, None] * 1.5


def test_the_probe_is_sklearns_logistic_regression_on_standardised_features():
    rng = np.random.default_rng(0)
    y, y_test = np.repeat(np.arange(3), 6), np.repeat(np.arange(3), 20)
    x, x_test = _blobs(rng, y), _blobs(rng, y_test)
    got = logistic_probe((x, y), (x_test, y_test), num_classes=3)
    scaler = StandardScaler().fit(x)
    predicted = LogisticRegression(max_iter=2000).fit(scaler.transform(x), y).predict(
        scaler.transform(x_test))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_test, predicted))
    assert got["f1_macro"] == pytest.approx(f1_score(y_test, predicted, average="macro"))


def test_classes_missing_from_the_draw_are_never_predicted():
    """k < C: the regression knows only the drawn classes; the others get no probability."""
    rng = np.random.default_rng(1)
    y, y_test = np.array([0, 0, 2, 2]), np.repeat(np.arange(3), 10)
    got = logistic_probe((_blobs(rng, y), y), (_blobs(rng, y_test), y_test), num_classes=3)
    assert got["balanced_accuracy"] <= 2 / 3 + 1e-6  # torchmetrics computes in float32
    one = logistic_probe((_blobs(rng, y[:2]), y[:2]), (_blobs(rng, y_test), y_test), 3)
    assert one["top1"] == pytest.approx(1 / 3) and one["balanced_accuracy"] == pytest.approx(1 / 3)


def test_pixels_are_the_grey_channel_at_the_asked_size():
    images = torch.rand(2, 3, 40, 40)
    assert pixel_featuriser(8)(images).shape == (2, 64)


def _cell(mean, low, high):
    return {"balanced_accuracy": {"mean": mean, "ci_low": low, "ci_high": high}}


def test_sanity_flags_chance_where_pixels_learn():
    pixels = {"set": {"8": _cell(0.8, 0.7, 0.9), "16": _cell(0.52, 0.45, 0.6)}}
    summary = {"set": {"heated": {"8": _cell(0.5, 0.46, 0.55), "16": _cell(0.5, 0.4, 0.6)},
                       "baseline": {"8": _cell(0.7, 0.6, 0.8)},
                       "single": {"8": _cell(0.52, math.nan, math.nan)}}}
    flags = sanity({"fine-tune": summary}, pixels, {"set": 0.5})
    assert [(f["init"], f["k"]) for f in flags] == [("heated", 8), ("single", 8)]
    assert flags[0]["pixels_balanced_accuracy"] == 0.8 and flags[0]["chance"] == 0.5
