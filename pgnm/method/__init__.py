"""The PGNM method: policy -> sampler -> (mask, in ``pgnm.mask``) -> objective.

Read in that order: ``policy.py``, ``sampler.py``, ``objective.py``; ``README.md`` beside them
is the method card (defaults, departures from the official code, how to switch them back).
"""

from __future__ import annotations

from pgnm.config import Config, PolicyConfig
from pgnm.method.objective import (
    ObjectiveOutput,
    PaperObjective,
    ReinforceObjective,
    build_objective,
)
from pgnm.method.policy import BetaLogits, Policy
from pgnm.method.sampler import BetaSampler, MaskSample, NonFiniteError


def build_policy(config: Config) -> Policy:
    p = config.policy
    return Policy(
        grid=config.mask.grid,
        trunk=p.trunk,
        hidden_dim=p.hidden_dim,
        mixing_decay=p.mixing_decay,
        state_momentum=p.state_momentum,
        input_size=p.input_size,
        head_passes=p.head_passes,
    )


def build_sampler(config: PolicyConfig, raise_now: bool = True) -> BetaSampler:
    return BetaSampler(config.logit_clamp, config.sample_eps, config.check_finite,
                       method=config.sampler, raise_now=raise_now)


__all__ = [
    "BetaLogits",
    "BetaSampler",
    "MaskSample",
    "NonFiniteError",
    "ObjectiveOutput",
    "PaperObjective",
    "Policy",
    "ReinforceObjective",
    "build_objective",
    "build_policy",
    "build_sampler",
]
