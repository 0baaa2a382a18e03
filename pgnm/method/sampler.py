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

How the draws are made (``method``, ``policy.sampler`` in the config):
  * ``torch``: ``torch.distributions.Beta``, the official sampler and random stream;
  * ``gamma`` (default): X = G_a / (G_a + G_b) with G ~ Gamma(conc, 1), which is exactly
    Beta(a, b); the Gamma draws are a speed detail (``pgnm.kernels.gamma``: faster than
    torch's element-by-element sampler, and free of host synchronisation). Its log-density
    is the same formula torch uses, without the stacking (``beta_log_prob``);
    tests/method/test_sampler.py checks both against scipy and torch.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor
from torch.distributions import Beta

from pgnm.kernels.gamma import sample_beta
from pgnm.method.policy import BetaLogits


class NonFiniteError(FloatingPointError):
    """A logit or log-probability of the policy is NaN or infinite."""


# Bits of a non-finite report (``MaskSample.problems``): found on the device, read later.
PROBLEMS = {1: "Beta alpha-logit", 2: "Beta beta-logit", 4: "Beta log-prob", 8: "loss"}


class MaskSample(NamedTuple):
    values: Tensor  # (B, G*G) in [eps, 1 - eps], no grad
    log_prob: Tensor  # (B, G*G) per-cell log-density, differentiable in the logits
    problems: Tensor | None = None  # int32 scalar on the device: OR of PROBLEMS bits, 0 = fine


def flag_nonfinite(tensor: Tensor, bit: int) -> Tensor:
    """``bit`` where ``tensor`` holds a NaN or inf, else 0: an int32 scalar, no host sync."""
    return torch.where(torch.isfinite(tensor).all(), 0, bit).to(torch.int32)


def describe_problems(problems: int, step: int | None = None) -> str:
    """The first bad tensor in the order they are computed (the likely cause), then the rest."""
    first, *rest = [name for bit, name in PROBLEMS.items() if problems & bit]
    at = f" at step {step}" if step is not None else ""
    also = f" (then also: {', '.join(rest)})" if rest else ""
    return (f"{first} values are NaN or infinite{at}{also}; lower the learning rate or "
            "enable policy.logit_clamp / policy.sample_eps")


def beta_log_prob(alpha: Tensor, beta: Tensor, values: Tensor) -> Tensor:
    """Beta log-density, differentiable in alpha and beta: torch's formula, without the stack."""
    log_kernel = torch.xlogy(alpha - 1.0, values) + torch.xlogy(beta - 1.0, 1.0 - values)
    return log_kernel + torch.lgamma(alpha + beta) - (torch.lgamma(alpha) + torch.lgamma(beta))


SamplerMethod = Literal["torch", "gamma"]


class BetaSampler:
    """Draws and log-densities for a batch of Beta logits.

    With ``check_finite``, every call reports non-finite logits and log-probabilities in
    ``MaskSample.problems`` without a host synchronisation; ``raise_now`` (the default, for
    direct callers) then reads it at once and raises :class:`NonFiniteError`. The trainer
    passes ``raise_now=False`` and reads the report only when it must look (``loop.py``).
    """

    def __init__(
        self,
        logit_clamp: float | None = 8.0,
        sample_eps: float = 1e-6,
        check_finite: bool = True,
        method: SamplerMethod = "gamma",
        raise_now: bool = True,
    ) -> None:
        if method not in ("torch", "gamma"):
            raise ValueError(
                f"policy.sampler={method!r} is not available; choose 'torch' or 'gamma'"
            )
        self.logit_clamp = logit_clamp
        self.sample_eps = sample_eps
        self.check_finite = check_finite
        self.method = method
        self.raise_now = raise_now

    def concentrations(self, logits: BetaLogits) -> tuple[Tensor, Tensor]:
        alpha, beta = logits
        if self.logit_clamp is not None:
            alpha = alpha.clamp(-self.logit_clamp, self.logit_clamp)
            beta = beta.clamp(-self.logit_clamp, self.logit_clamp)
        return alpha.exp(), beta.exp()

    def __call__(self, logits: BetaLogits, step: int | None = None) -> MaskSample:
        alpha, beta = self.concentrations(logits)
        with torch.no_grad():
            if self.method == "torch":
                values = Beta(alpha, beta, validate_args=False).sample()
            else:
                values = sample_beta(alpha, beta)
            if self.sample_eps > 0:
                values = values.clamp(self.sample_eps, 1.0 - self.sample_eps)
        if self.method == "torch":
            log_prob = Beta(alpha, beta, validate_args=False).log_prob(values)
        else:
            log_prob = beta_log_prob(alpha, beta, values)
        problems = None
        if self.check_finite:
            with torch.no_grad():
                problems = (flag_nonfinite(logits.alpha, 1) | flag_nonfinite(logits.beta, 2)
                            | flag_nonfinite(log_prob, 4))
            if self.raise_now and int(problems):
                raise NonFiniteError(describe_problems(int(problems), step))
        return MaskSample(values=values, log_prob=log_prob, problems=problems)
