"""What ``fit`` returns: the run's summary, typed; ``summary.json`` is its JSON form."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pgnm.atomic import atomic_write
from pgnm.names import Stage
from pgnm.tracking.registry import RegisteredModel

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class FitResult:
    stage: Stage
    name: str
    global_step: int
    train_img_s: float
    world_size: int
    out_dir: Path
    final: dict[str, float] = field(default_factory=dict)  # last evaluation, "<variant>/<key>"
    running_state_rank_spread: float = 0.0  # 0.0: every rank holds the same policy state
    # Rank 0 only (None on the other ranks):
    model: Path | None = None  # <out_dir>/model/model.pt
    curves: Path | None = None
    mlflow_run_id: str | None = None
    tracking_uri: str | None = None
    registered: RegisteredModel | None = None  # when tracking.log_model registered it
    mlflow_fallback: Path | None = None  # logging buffered here while MLflow was unreachable

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["stage"] = self.stage.value
        for key in ("out_dir", "model", "curves", "mlflow_fallback"):
            data[key] = None if data[key] is None else str(data[key])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FitResult:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["stage"] = Stage(values["stage"])
        for key in ("out_dir", "model", "curves", "mlflow_fallback"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        if values.get("registered"):
            values["registered"] = RegisteredModel(**values["registered"])
        return cls(**values)

    def write(self) -> Path:
        return atomic_write(self.out_dir / SUMMARY_FILE, json.dumps(self.to_json(), indent=1))

    @classmethod
    def read(cls, out_dir: str | Path) -> FitResult:
        return cls.from_json(json.loads((Path(out_dir) / SUMMARY_FILE).read_text()))
