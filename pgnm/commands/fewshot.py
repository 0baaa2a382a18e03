"""The few-shot protocol: fine-tune every initialisation on k samples per downstream set.

    pgnm fewshot --config fewshot/<name> [key=value ...]
    python launch/fewshot.py --config configs/fewshot/<name>.yaml [key=value ...]

For each initialisation in ``fewshot.inits`` (plus the equal-budget and effective-LR controls,
derived from the baseline unless switched off) and each set in ``fewshot.datasets``, draws
``fewshot.trials`` stratified subsets of each size in ``fewshot.sizes``, fine-tunes on each
with the rest of the config as the recipe, and tests on the full test split. Results:
``<run_dir>/<name>/fewshot.json``, ``fewshot.md`` and ``fewshot-<dataset>.png``, and an
MLflow parent run (``pgnm/protocol``). Re-running continues where a run stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgnm.protocol import ProtocolResult


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> ProtocolResult:
    from pgnm.config import config_from_argv
    from pgnm.errors import reported_as_one_line

    config = config_from_argv(argv, __doc__.splitlines()[0], prog)
    from pgnm.protocol import run_protocol

    with reported_as_one_line("fewshot"):
        result = run_protocol(config)
    print(result.markdown_file.read_text())
    print("\n".join(["results:", *(f"  {f}" for f in result.files)]))
    return result
