"""Evaluation protocols above the trainer: the few-shot comparison of initialisations.

Imports flow launch -> pgnm.protocol -> pgnm.train -> pgnm.{data, models, tracking}.
``run_protocol`` (``fewshot.py``) is the entry point; ``subsets`` draws and writes the
stratified subsets, ``inits`` resolves and trains the initialisations and the controls,
``stats`` and ``report`` summarise, ``tracking`` logs the MLflow run tree.
"""

from pgnm.protocol.fewshot import ProtocolResult, run_protocol

__all__ = ["ProtocolResult", "run_protocol"]
