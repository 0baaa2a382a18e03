"""The few-shot protocol: fine-tune every initialisation on k samples per downstream set.

    python launch/fewshot.py --config configs/fewshot/<name>.yaml [key=value ...]

For each initialisation in ``fewshot.inits`` (plus the equal-budget and effective-LR controls,
derived from the baseline unless switched off) and each set in ``fewshot.datasets``, draws
``fewshot.trials`` stratified subsets of each size in ``fewshot.sizes``, fine-tunes on each
with the rest of the config as the recipe, and tests on the full test split. Results:
``<run_dir>/<name>/fewshot.json``, ``fewshot.md`` and ``fewshot-<dataset>.png``, and an
MLflow parent run (``pgnm/protocol``). Re-running continues where a run stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pgnm.config import config_from_argv  # noqa: E402
from pgnm.errors import reported_as_one_line  # noqa: E402
from pgnm.protocol import ProtocolResult, run_protocol  # noqa: E402


def main(argv: list[str] | None = None) -> ProtocolResult:
    config = config_from_argv(argv, __doc__.splitlines()[0])
    with reported_as_one_line("fewshot"):
        result = run_protocol(config)
    print(result.markdown_file.read_text())
    print("\n".join(["results:", *(f"  {f}" for f in result.files)]))
    return result


if __name__ == "__main__":
    main()
