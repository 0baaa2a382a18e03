"""The paper's classification metrics, computed with torchmetrics on gathered predictions.

top-1 / top-5 accuracy, macro precision / recall / F1, balanced accuracy (= macro recall for a
single-label task), macro one-vs-rest ROC-AUC over the classes present in the targets, and
accuracy per modality (CT / MR / US, from ``classes.json``) when the classes name one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torchmetrics.functional.classification as tmf
from torch import Tensor


def classification_metrics(
    logits: Tensor, targets: Tensor, modalities: Sequence[str | None] | None = None
) -> dict[str, float]:
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    common = {"num_classes": num_classes}
    out = {
        "top1": tmf.multiclass_accuracy(probs, targets, average="micro", top_k=1, **common),
        "top5": tmf.multiclass_accuracy(
            probs, targets, average="micro", top_k=min(5, num_classes), **common
        ),
        "precision_macro": tmf.multiclass_precision(probs, targets, average="macro", **common),
        "recall_macro": tmf.multiclass_recall(probs, targets, average="macro", **common),
        "f1_macro": tmf.multiclass_f1_score(probs, targets, average="macro", **common),
    }
    out["balanced_accuracy"] = out["recall_macro"]
    # AUROC is undefined for a class with no positive example in this split: average the rest.
    with warnings.catch_warnings():  # torchmetrics warns about exactly those absent classes
        warnings.filterwarnings("ignore", message="No positive samples in targets")
        per_class = tmf.multiclass_auroc(probs, targets, average=None, **common)
    present = torch.bincount(targets, minlength=num_classes) > 0
    out["auroc_macro_ovr"] = (
        per_class[present].mean() if present.any() else torch.tensor(float("nan"))
    )
    out["loss"] = torch.nn.functional.cross_entropy(logits.float(), targets)
    result = {k: float(v) for k, v in out.items()}
    if modalities is not None:
        correct = logits.argmax(dim=1) == targets
        for modality in sorted({m for m in modalities if m}):
            members = torch.tensor([m == modality for m in modalities])[targets]
            if members.any():
                result[f"top1_{modality}"] = float(correct[members].float().mean())
    return result
