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
    Beta(a, b). The Gamma draws are Marsaglia-Tsang rejection sampling run on whole tensors
    (``sample_beta``), in log space, so X = sigmoid(log G_a - log G_b) stays well defined
    even at concentration e^-8 where G itself underflows. On a 2-core CPU it is 2-3x faster
    than torch's element-by-element sampler; its log-density is the same formula torch uses,
    without the stacking (tests/method/test_sampler.py checks both against scipy and torch).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

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


# Marsaglia-Tsang accepts >= 95% of proposals per round for shape >= 1, so 64 rounds leave a
# cell undrawn with probability < 0.05**64; such a cell would come out NaN and be reported.
_MAX_ROUNDS = 64


def _propose(d: Tensor, c: Tensor, normal_dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """One Marsaglia-Tsang round: (log proposal, accepted?, log of a recycled uniform)."""
    x = torch.randn(d.shape, dtype=normal_dtype, device=d.device).to(torch.float64)
    log_u = torch.rand(d.shape, dtype=torch.float64, device=d.device).neg_().log1p_()  # u in (0, 1]
    t = c * x
    log_v = torch.log1p(t).mul_(3.0)  # NaN where 1 + c x < 0: the comparison below rejects it
    v = t.add_(1.0).pow_(3)
    threshold = (1.0 - v).add_(log_v).mul_(d).addcmul_(x, x, value=0.5)
    accepted = log_u < threshold
    # Given acceptance at x, u is uniform on (0, exp(threshold)), so u / exp(threshold) is a
    # fresh uniform independent of the proposal: the k < 1 boost uses it instead of a new draw.
    return d.log().add_(log_v), accepted, log_u.sub_(threshold)


def _log_standard_gamma(concentration: Tensor) -> Tensor:
    """log of one Gamma(concentration, 1) draw per element, as float64.

    Marsaglia & Tsang (2000): for shape k >= 1 let d = k - 1/3, c = 1 / sqrt(9 d); draw
    x ~ N(0, 1), u ~ U(0, 1), v = (1 + c x)^3 and accept d v if v > 0 and
    log u < x^2 / 2 + d - d v + d log v; accepted values are exactly Gamma(k). Shapes k < 1
    use Gamma(k) = Gamma(k + 1) * U^(1/k), added in log space where it cannot underflow.
    All cells are proposed at once and only the rejected ones (< 5%) are drawn again.

    Precision: the acceptance test and the uniforms are float64, as in torch's own sampler
    (d (1 - v + log v) cancels badly in float32 when d is large). The normals are float32 for
    float32 input, which halves the cost; they resolve the proposal to 2^-24 and reach 5.8
    sigma, so events rarer than ~1e-8 per draw are where this can differ from exact.
    """
    flat = concentration.detach().reshape(-1).to(torch.float64)
    normal_dtype = torch.float64 if concentration.dtype == torch.float64 else torch.float32
    boosted = flat < 1
    d = (flat + boosted).sub_(1.0 / 3.0)
    c = torch.rsqrt(d).mul_(1.0 / 3.0)
    log_gamma, accepted, log_uniform = _propose(d, c, normal_dtype)
    pending = (~accepted).nonzero().squeeze(1)
    # Non-finite concentrations would be rejected forever: they come out NaN, to be reported.
    finite = torch.isfinite(d[pending])
    log_gamma[pending[~finite]] = float("nan")
    pending = pending[finite]
    for _ in range(_MAX_ROUNDS):
        if pending.numel() == 0:
            break
        proposal, accepted, recycled = _propose(d[pending], c[pending], normal_dtype)
        chosen = pending[accepted]
        log_gamma[chosen] = proposal[accepted]
        log_uniform[chosen] = recycled[accepted]
        pending = pending[~accepted]
    log_gamma[pending] = float("nan")
    # log Gamma(k) = log Gamma(k + 1) + log(U) / k where k < 1; zero elsewhere.
    log_gamma += log_uniform.mul_(boosted).div_(flat)
    return log_gamma.view(concentration.shape)


def sample_beta(alpha: Tensor, beta: Tensor) -> Tensor:
    """Beta(alpha, beta) draws without gradient, distributed as ``Beta(alpha, beta).sample()``."""
    alpha, beta = torch.broadcast_tensors(alpha, beta)
    log_gamma = _log_standard_gamma(torch.stack([alpha, beta]))
    values = torch.sigmoid(log_gamma[0] - log_gamma[1]).to(alpha.dtype)
    # Like torch's sampler, keep draws inside the open interval the dtype can represent, so
    # that the log-density stays finite where a true draw would round to 0 or 1.
    finfo = torch.finfo(values.dtype)
    return values.clamp(finfo.tiny, 1.0 - finfo.eps / 2)


def beta_log_prob(alpha: Tensor, beta: Tensor, values: Tensor) -> Tensor:
    """Beta log-density, differentiable in alpha and beta: torch's formula, without the stack."""
    log_kernel = torch.xlogy(alpha - 1.0, values) + torch.xlogy(beta - 1.0, 1.0 - values)
    return log_kernel + torch.lgamma(alpha + beta) - (torch.lgamma(alpha) + torch.lgamma(beta))


SamplerMethod = Literal["torch", "gamma"]


class BetaSampler:
    def __init__(
        self,
        logit_clamp: float | None = 8.0,
        sample_eps: float = 1e-6,
        check_finite: bool = True,
        method: SamplerMethod = "gamma",
    ) -> None:
        if method not in ("torch", "gamma"):
            raise ValueError(
                f"policy.sampler={method!r} is not available; choose 'torch' or 'gamma'"
            )
        self.logit_clamp = logit_clamp
        self.sample_eps = sample_eps
        self.check_finite = check_finite
        self.method = method

    def concentrations(self, logits: BetaLogits, step: int | None = None) -> tuple[Tensor, Tensor]:
        alpha, beta = logits
        if self.check_finite:
            _check_finite("Beta alpha-logit", alpha, step)
            _check_finite("Beta beta-logit", beta, step)
        if self.logit_clamp is not None:
            alpha = alpha.clamp(-self.logit_clamp, self.logit_clamp)
            beta = beta.clamp(-self.logit_clamp, self.logit_clamp)
        return alpha.exp(), beta.exp()

    def distribution(self, logits: BetaLogits, step: int | None = None) -> Beta:
        # Our own checks replace argument validation, which costs a device sync per call.
        return Beta(*self.concentrations(logits, step), validate_args=False)

    def __call__(self, logits: BetaLogits, step: int | None = None) -> MaskSample:
        alpha, beta = self.concentrations(logits, step)
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
        if self.check_finite:
            _check_finite("Beta log-prob", log_prob, step)
        return MaskSample(values=values, log_prob=log_prob)
