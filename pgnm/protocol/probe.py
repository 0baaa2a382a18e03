"""Linear probes and the pixel baseline: logistic regressions on the protocol's paired draws.

A fine-tune has hyperparameters (learning rate, budget) that can hide or invent a difference
between initialisations. A linear probe has almost none: each initialisation's classifier is
frozen, its pooled features (timm's ``forward_head(..., pre_logits=True)``) of the k drawn
training images are standardised and fitted with scikit-learn's ``LogisticRegression``, which
is scored on the full test split. The **pixel baseline** does the same on raw pixels (the
grey channel resized to ``fewshot.pixel_size`` px a side): a set it learns is learnable from
k samples, so an initialisation left at chance there is flagged by the report, not believed.

Rows (``probes.jsonl``, read back on a re-run) carry ``"eval": "probe"`` and the same
(init, dataset, k, trial, seed) as the fine-tunes; the pixel baseline is the init ``pixels``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from pgnm.config import Config, with_overrides
from pgnm.data import build_loader
from pgnm.models import create_classifier, initial_weights, load_backbone
from pgnm.protocol.report import read_rows
from pgnm.seeds import seed_weights
from pgnm.train.metrics import classification_metrics

PIXELS = "pixels"  # the init name of the pixel baseline's rows
PROBE = "probe"  # the ``eval`` of a probe row (fine-tune rows have none)
ABSENT = -1e4  # log-probability of a class the draw did not contain (the regression never saw it)

Featuriser = Callable[[torch.Tensor], torch.Tensor]


def _subset_config(config: Config, data_root: Path) -> Config:
    return with_overrides(config, {"data.root": str(data_root), "model.num_classes": None},
                          "few-shot probe")


def _features(config: Config, split: str, featurise: Featuriser) -> tuple[np.ndarray, np.ndarray]:
    """Every sample of ``split`` once, in the eval transform, through ``featurise``."""
    xs, ys = [], []
    with torch.no_grad():
        for images, labels in build_loader(config, split, False):
            xs.append(featurise(images).double().cpu().numpy())
            ys.append(labels.cpu().numpy())
    return np.concatenate(xs), np.concatenate(ys)


def pixel_featuriser(size: int) -> Featuriser:
    def featurise(images: torch.Tensor) -> torch.Tensor:
        grey = images[:, :1].float()  # the data replicate grey into 3 channels
        return F.interpolate(grey, size=(size, size), mode="bilinear", antialias=True,
                             align_corners=False).flatten(1)
    return featurise


def frozen_featuriser(config: Config, model_source: str | None, num_classes: int) -> Featuriser:
    """The pooled features of the initialisation's classifier (random weights for ``None``,
    seeded like a fine-tune's), frozen."""
    seed_weights(config.seed)
    model_config = config.model.model_copy(update={"num_classes": num_classes})
    classifier = create_classifier(model_config)
    if model_source is not None:
        load_backbone(classifier, initial_weights(model_source, config.model.arch), model_source)
    classifier.eval()

    def featurise(images: torch.Tensor) -> torch.Tensor:
        return classifier.forward_head(classifier.forward_features(images.float()),
                                       pre_logits=True)
    return featurise


def logistic_probe(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                   num_classes: int) -> dict[str, float]:
    """Standardise, fit a logistic regression on ``train``, score ``test`` with the protocol's
    metrics (``pgnm.train.metrics``)."""
    (x, y), (x_test, y_test) = train, test
    seen = np.unique(y)
    log_proba = np.full((len(y_test), num_classes), ABSENT)
    if len(seen) == 1:  # one class drawn: the regression has nothing to separate
        log_proba[:, seen[0]] = 0.0
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(x, y)
        log_proba[:, model.classes_] = model.predict_log_proba(x_test)
    metrics = classification_metrics(torch.from_numpy(log_proba), torch.from_numpy(y_test))
    return {key: metrics[key] for key in ("f1_macro", "balanced_accuracy", "auroc_macro_ovr",
                                          "top1")}


def probe_all(config: Config, root: Path, models: dict[str, str | None], datasets: dict,
              draws: dict, subset_dir: Callable[[str, int, int], Path]) -> list[dict]:
    """Probe rows for every (init in ``models`` and the pixel baseline) x dataset x draw."""
    fs = config.fewshot
    path = root / "probes.jsonl"
    done = read_rows(path)
    featurisers: dict[str, Callable[[int], Featuriser]] = {
        PIXELS: lambda _classes: pixel_featuriser(fs.pixel_size),
        **{name: (lambda classes, source=source: frozen_featuriser(config, source, classes))
           for name, source in models.items()}}
    wanted = [(init, dataset, int(k), d) for init in featurisers for dataset in datasets
              for k, per_k in draws[dataset].items() for d in per_k]
    pending = [w for w in wanted if (w[0], w[1], w[2], w[3]["trial"]) not in done]
    rows = [done[(i, ds, k, d["trial"])] for i, ds, k, d in wanted
            if (i, ds, k, d["trial"]) in done]
    bar = tqdm(total=len(wanted), initial=len(rows), desc="linear probes", unit="probe",
               disable=not pending)
    cache: dict[tuple[str, str], tuple[Featuriser, tuple]] = {}
    for init, dataset, k, draw in pending:
        classes = len(datasets[dataset]["classes"])
        subset = _subset_config(config, subset_dir(dataset, k, draw["trial"]))
        if (init, dataset) not in cache:  # one featuriser and one test pass per pair
            featurise = featurisers[init](classes)
            cache = {(init, dataset): (featurise, _features(subset, "test", featurise))}
        featurise, test = cache[(init, dataset)]
        metrics = logistic_probe(_features(subset, "train", featurise), test, classes)
        row = {"init": init, "dataset": dataset, "k": k, "trial": draw["trial"],
               "seed": draw["seed"], "eval": PROBE, "metrics": metrics}
        with open(path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        rows.append(row)
        bar.update()
    bar.close()
    return rows
