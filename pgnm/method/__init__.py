"""The PGNM method, read top to bottom: policy -> sampler -> mask -> objective, and one step.

``policy.py`` (Beta logits per grid cell), ``sampler.py`` (one draw per cell and its
log-density), ``mask.py`` (upsample, blur, multiply: the reference chain and the one function
that builds the mask), ``objective.py`` (the paper's loss and the REINFORCE variant), and
``step.py`` (``pgnm_step``, which training, the gallery and the preview all run). ``README.md``
beside them is the method card: defaults, departures from the official code and how to switch
them back, and how to use the step in your own loop. Fast implementations live in
``pgnm.kernels``.
"""

from __future__ import annotations

from pgnm.method.mask import apply_mask
from pgnm.method.objective import (
    ObjectiveOutput,
    PaperObjective,
    ReinforceObjective,
    build_objective,
)
from pgnm.method.policy import BetaLogits, Policy
from pgnm.method.sampler import BetaSampler, MaskSample, NonFiniteError
from pgnm.method.step import PGNMModel, StepOutput, build_policy, build_sampler, pgnm_step

__all__ = [
    "BetaLogits",
    "BetaSampler",
    "MaskSample",
    "NonFiniteError",
    "ObjectiveOutput",
    "PGNMModel",
    "PaperObjective",
    "Policy",
    "ReinforceObjective",
    "StepOutput",
    "apply_mask",
    "build_objective",
    "build_policy",
    "build_sampler",
    "pgnm_step",
]
