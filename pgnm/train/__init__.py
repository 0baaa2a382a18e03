"""Training: the joint PGNM module and, around it, the loops that launch scripts call."""

from pgnm.train.model import PGNMModel, StepOutput

__all__ = ["PGNMModel", "StepOutput"]
