"""What a run leaves behind: model files, metric log, learning curves, summary.

``<run_dir>/<name>/`` holds ``model/model.pt`` (the heated model after stage 1, the fine-tuned
model after stage 2: classifier weights, timm architecture, class list and the full config),
``model/policy.pt`` after stage 1 (policy weights with its running state, for analysis),
``metrics.jsonl`` (one JSON object per log line), ``curves.png``, ``gallery/epoch-NNN.png``
and ``summary.json``. Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pgnm.atomic import atomic_path, atomic_write  # noqa: E402
from pgnm.config import Config, dump_config  # noqa: E402
from pgnm.method.step import PGNMModel  # noqa: E402
from pgnm.tracking import Tracker  # noqa: E402

MODEL_FORMAT = "pgnm-classifier/1"


def _atomic(path: Path, write) -> Path:  # noqa: ANN001 - a callable taking the temporary path
    with atomic_path(path) as tmp:
        write(tmp)
    return path


def save_model(
    model: PGNMModel, config: Config, classes: list[str], out_dir: Path, stage: str
) -> Path:
    """The classifier as fine-tuning (or any timm user) needs it: rebuildable from the file."""
    payload = {
        "format": MODEL_FORMAT,
        "stage": str(stage),  # a plain string: model files load weights-only
        "arch": config.model.arch,
        "num_classes": config.model.num_classes,
        "classes": classes,
        "state_dict": {k: v.detach().cpu() for k, v in model.classifier.state_dict().items()},
        "config": dump_config(config),
    }
    path = _atomic(out_dir / "model" / "model.pt", lambda tmp: torch.save(payload, tmp))
    if model.policy is not None:
        policy = {"state_dict": {k: v.cpu() for k, v in model.policy.state_dict().items()}}
        _atomic(out_dir / "model" / "policy.pt", lambda tmp: torch.save(policy, tmp))
    return path


class MetricLog:
    """``metrics.jsonl`` on rank 0; other ranks log nothing but count the records."""

    def __init__(self, path: Path, enabled: bool, tracker: Tracker | None = None) -> None:
        self.path, self.enabled, self.tracker = path, enabled, tracker
        self.count = 0  # records logged so far; a checkpoint stores it (Position.log_records)
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, record: dict) -> None:
        """Append to metrics.jsonl and hand the numbers to MLflow (``train/loss`` etc.)."""
        self.count += 1
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self._send(record)

    def _send(self, record: dict) -> None:
        if self.tracker is not None:
            epoch = record.get("kind") == "epoch"
            numbers = {f"{'' if epoch else 'step/'}{k}": v for k, v in record.items()
                       if k not in ("kind", "step", "epoch")}
            # an epoch's figures describe the model (linked to it), a step's the run
            self.tracker.log_metrics(numbers, step=record["step"], link=epoch)

    def resume(self, records: int) -> None:
        """Continue from a checkpoint taken after ``records`` records, so that every record is
        in the log once: later lines (written before a crash) are dropped, since the resumed
        run writes them again, identically; MLflow gets the checkpointed records it lacks
        (sent too late before the crash) and nothing it already holds."""
        self.count = records
        if not self.enabled:
            return
        kept = self.path.read_text().splitlines()[:records] if self.path.is_file() else []
        _atomic(self.path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in kept)))
        if self.tracker is not None:
            self.tracker.skip_logged()
            for line in kept:
                self._send(json.loads(line))

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


POLICY_SHOWN = tuple(f"policy/{n}" for n in ("alpha_mean", "beta_mean", "mask_mean",
                                                "image_specificity", "kl_uniform"))


def plot_curves(records: list[dict], path: Path, title: str) -> Path | None:
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not epochs:
        return None
    policy = [k for k in POLICY_SHOWN if k in epochs[-1]]
    fig, (left, right, *rest) = plt.subplots(1, 3 if policy else 2,
                                             figsize=(15 if policy else 10, 3.6))
    x = [r["epoch"] for r in epochs]
    for key in policy:  # what the policy learns (pgnm.method.diagnostics)
        rest[0].plot(x, [r.get(key) for r in epochs], marker="o", label=key)
    if policy:
        rest[0].set_xlabel("epoch")
        rest[0].legend(fontsize=8)
    left.plot(x, [r["train/loss"] for r in epochs], marker="o", label="train loss")
    left.plot(x, [r["train/ce"] for r in epochs], marker="o", label="train CE")
    left.set_xlabel("epoch")
    left.legend()
    for key in sorted(k for k in epochs[-1] if k.endswith(("/top1", "/f1_macro"))):
        right.plot(x, [r.get(key) for r in epochs], marker="o", label=key)
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    written = _atomic(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
    return written


def write_json(path: Path, data: dict) -> Path:
    return atomic_write(path, json.dumps(data, indent=1))
