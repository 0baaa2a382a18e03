"""The ladder's comparison across rungs: each rung's own paired differences, side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pgnm.protocol import ladder
from pgnm.protocol.report import METRICS, paired


def _report(shift: float, trials: int, seed: int) -> dict:
    """A fewshot.json's paired sections, from rows where heated-paper beats the baseline by
    ``shift`` on every draw (plus noise) and random-mask does not."""
    rng = np.random.default_rng(seed)
    rows = []
    for init, offset in (("baseline", 0.0), ("heated-paper", shift), ("random-mask", 0.0)):
        for k in (8, 64):
            for trial in range(trials):
                base = 0.5 + 0.01 * trial
                value = base + offset + (rng.normal(0, 0.01) if init != "baseline" else 0.0)
                rows.append({"init": init, "dataset": "organamnist", "k": k, "trial": trial,
                             "metrics": {m: value for m in METRICS}})
    return {"trials_per_size": trials, "recipe": {"optim.lr": 0.05},
            "lr_search": {"lrs": [0.02, 0.05], "select_on": "loss"} if trials == 5 else None,
            "paired": {"baseline": "baseline", "differences": paired(rows, "baseline")},
            "probe": {"paired": paired(rows, "baseline")}}


def test_the_table_and_plots_show_each_rungs_differences(tmp_path):
    files = {rung: tmp_path / rung / "fewshot.json" for rung in ("toy", "small")}
    for (rung, path), (shift, trials) in zip(files.items(), ((0.0, 3), (0.2, 5))):
        path.parent.mkdir()
        path.write_text(json.dumps(_report(shift, trials, len(rung))))
    reports = ladder.load(files)
    written = ladder.write(reports, tmp_path / "out")
    assert [p.name for p in written] == ["ladder.md", "ladder-fine-tune.png",
                                         "ladder-linear-probe.png"]
    table = written[0].read_text()
    rows = [line for line in table.splitlines() if line.startswith("| organamnist |")]
    # 2 evaluations x (heated-paper, random-mask) x 2 rungs; heated-reinforce has no rows
    assert len(rows) == 8 and not any("heated-reinforce" in r for r in rows)
    small = next(r for r in rows if "| heated-paper | small |" in r)
    expected = reports["small"]["paired"]["differences"]["organamnist"]["heated-paper"]
    assert f"{expected['8']['f1_macro']['mean']:+.3f}" in small and "+0.2" in small
    assert "**small**: 5 trials" in table
    # the rule that gave each rung's fine-tunes their lr: rungs compare only under one rule
    assert "lr chosen per draw from [0.02, 0.05] on val loss" in table
    assert "**toy**: 3 trials per k, baseline `baseline`, one lr (0.05)" in table
    for png in written[1:]:
        assert Image.open(png).size[0] > 800


def test_a_missing_rung_names_its_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="rung medium: .*fewshot.json"):
        ladder.load({"medium": tmp_path / "fewshot.json"})
