"""Training: the joint PGNM module and the loop both stages share.

``fit(config, stage)`` runs stage 1 (``pretrain``: policy + classifier, the heated model) or
stage 2 (``finetune``: the classifier alone from ``model.init``, or from scratch).
"""

from pgnm.errors import TrainingDiverged
from pgnm.method.step import PGNMModel, StepOutput
from pgnm.train.loop import fit

__all__ = ["PGNMModel", "StepOutput", "TrainingDiverged", "fit"]
