"""Sampling the mask grid: one Beta draw per cell, and its log-probability.

    m_c ~ Beta(exp a_c, exp b_c)        log p(m_c) = Beta log-density at m_c

The draw carries no gradient (the official code uses ``.sample()``, not ``.rsample()``): the
policy learns only through ``log_prob``, the score-function route.

Two guards, both departures from the official code and both switchable off:
  * logits are clamped to [-logit_clamp, logit_clamp] before ``exp``. Far outside that range
    the Beta is so sharp that float32 draws land exactly on 0 or 1;
  * draws are clamped to [eps, 1 - eps] before the log-density is taken, since for a
    concentration below 1 the density is infinite at the end points.
Whatever gets through is caught by a finite check that names the training step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Beta

from pgnm.method.policy import BetaLogits


class NonFiniteError(FloatingPointError):
    """A logit or log-probability of the policy is NaN or infinite."""


class MaskSample(NamedTuple):
    values: Tensor  # (B, G*G) in [eps, 1 - eps], no grad
    log_prob: Tensor  # (B, G*G) per-cell log-density, differentiable in the logits


def _check_finite(name: str, tensor: Tensor, step: int | None) -> None:
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        at = f"at step {step}" if step is not None else "(step unknown)"
        raise NonFiniteError(
            f"{bad} of {tensor.numel()} {name} values are NaN or infinite {at}; "
            "lower the learning rate or enable policy.logit_clamp / policy.sample_eps"
        )


class BetaSampler:
    def __init__(
        self, logit_clamp: float | None = 8.0, sample_eps: float = 1e-6, check_finite: bool = True
    ) -> None:
        self.logit_clamp = logit_clamp
        self.sample_eps = sample_eps
        self.check_finite = check_finite

    def distribution(self, logits: BetaLogits, step: int | None = None) -> Beta:
        alpha, beta = logits
        if self.check_finite:
            _check_finite("Beta alpha-logit", alpha, step)
            _check_finite("Beta beta-logit", beta, step)
        if self.logit_clamp is not None:
            alpha = alpha.clamp(-self.logit_clamp, self.logit_clamp)
            beta = beta.clamp(-self.logit_clamp, self.logit_clamp)
        # Our own checks replace argument validation, which costs a device sync per call.
        return Beta(alpha.exp(), beta.exp(), validate_args=False)

    def __call__(self, logits: BetaLogits, step: int | None = None) -> MaskSample:
        dist = self.distribution(logits, step)
        with torch.no_grad():
            values = dist.sample()
            if self.sample_eps > 0:
                values = values.clamp(self.sample_eps, 1.0 - self.sample_eps)
        log_prob = dist.log_prob(values)
        if self.check_finite:
            _check_finite("Beta log-prob", log_prob, step)
        return MaskSample(values=values, log_prob=log_prob)
