from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Beta

from pgnm.config import ConfigError, load_config
from pgnm.method import BetaLogits, BetaSampler, NonFiniteError
from pgnm.method.sampler import beta_log_prob, sample_beta


def logits(batch=4, cells=64, scale=1.0, requires_grad=True):
    a = (scale * torch.randn(batch, cells)).requires_grad_(requires_grad)
    b = (scale * torch.randn(batch, cells)).requires_grad_(requires_grad)
    return BetaLogits(a, b)


def test_values_in_unit_interval_without_gradient_and_log_prob_with_one():
    lg = logits()
    sample = BetaSampler()(lg, step=0)
    assert sample.values.shape == sample.log_prob.shape == (4, 64)
    assert not sample.values.requires_grad and sample.log_prob.requires_grad
    assert (sample.values > 0).all() and (sample.values < 1).all()
    sample.log_prob.sum().backward()
    assert lg.alpha.grad is not None and lg.alpha.grad.abs().sum() > 0


def test_log_prob_agrees_with_torch_beta():
    lg = logits(requires_grad=False)
    sample = BetaSampler(logit_clamp=None, sample_eps=0.0)(lg)
    expected = Beta(lg.alpha.exp(), lg.beta.exp()).log_prob(sample.values)
    torch.testing.assert_close(sample.log_prob, expected)


def test_moments_match_the_beta_distribution():
    a = torch.full((1, 200_000), 0.7)  # concentration exp(0.7) ~ 2.01
    b = torch.full((1, 200_000), 1.6)  # exp(1.6) ~ 4.95
    values = BetaSampler()(BetaLogits(a, b)).values
    ca, cb = a.exp()[0, 0].item(), b.exp()[0, 0].item()
    mean = ca / (ca + cb)
    var = ca * cb / ((ca + cb) ** 2 * (ca + cb + 1))
    assert values.mean().item() == pytest.approx(mean, abs=2e-3)
    assert values.var().item() == pytest.approx(var, rel=2e-2)


@pytest.mark.parametrize("scale", [30.0, 1e4])
def test_guards_keep_extreme_logits_finite(scale):
    sample = BetaSampler(logit_clamp=8.0, sample_eps=1e-6)(logits(scale=scale), step=3)
    assert torch.isfinite(sample.log_prob).all()
    assert sample.values.min() >= 1e-6 and sample.values.max() <= 1 - 1e-6


def test_unguarded_sampler_raises_naming_the_step():
    extreme = BetaLogits(torch.full((2, 64), 100.0), torch.zeros(2, 64))  # exp(100) = inf
    with pytest.raises(NonFiniteError, match="at step 17"):
        BetaSampler(logit_clamp=None, sample_eps=0.0)(extreme, step=17)


def test_nan_logits_raise_even_with_guards():
    bad = BetaLogits(torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2))
    with pytest.raises(NonFiniteError, match="alpha-logit values are NaN or infinite at step 5"):
        BetaSampler()(bad, step=5)


def test_clamp_only_cuts_gradient_outside_its_range():
    a = torch.tensor([[0.5, 20.0]], requires_grad=True)
    sample = BetaSampler(logit_clamp=8.0)(BetaLogits(a, torch.zeros(1, 2)))
    sample.log_prob.sum().backward()
    assert a.grad[0, 0] != 0 and a.grad[0, 1] == 0


def test_seeded_sampling_is_deterministic():
    lg = logits(requires_grad=False)
    torch.manual_seed(123)
    first = BetaSampler()(lg).values
    torch.manual_seed(123)
    second = BetaSampler()(lg).values
    assert torch.equal(first, second)


# ----------------------------------------------------------------------------- fast sampler

# (alpha, beta) concentrations: both below 1 (U-shaped), mixed, both above 1, and sharp up
# to the clamp's exp(8) = 2981. Extremes float32 cannot resolve are tested on their tails.
CONCENTRATIONS = [
    (0.5, 0.5),
    (0.3, 2.0),
    (2.0, 5.0),
    (5.0, 0.7),
    (1.0, 1.0),
    (40.0, 15.0),
    (2980.0, 3.0),
    (2980.0, 2980.0),
]


def _draws(a: float, b: float, n: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return sample_beta(torch.full((n,), a), torch.full((n,), b))


@pytest.mark.parametrize(("a", "b"), CONCENTRATIONS)
def test_fast_draws_pass_a_ks_test_against_scipy(a, b):
    values = _draws(a, b, 40_000, seed=1).double().numpy()
    result = stats.kstest(values, stats.beta(a, b).cdf)
    assert result.pvalue > 1e-3, result


@pytest.mark.parametrize(("a", "b"), CONCENTRATIONS)
def test_fast_draws_have_the_beta_moments(a, b):
    n = 200_000
    values = _draws(a, b, n, seed=2).double()
    mean, var = stats.beta.stats(a, b, moments="mv")
    # 5 standard errors; the variance's standard error from the fourth central moment.
    assert abs(values.mean().item() - mean) < 5 * (var / n) ** 0.5
    m4 = stats.beta(a, b).expect(lambda x: (x - mean) ** 4)
    assert abs(values.var().item() - var) < 5 * ((m4 - var**2) / n) ** 0.5


def test_fast_and_torch_draws_are_the_same_distribution():
    alpha = torch.exp(torch.randn(64))  # a mix of concentrations, the same for both samplers
    beta = torch.exp(torch.randn(64))
    torch.manual_seed(3)
    ours = torch.stack([sample_beta(alpha, beta) for _ in range(300)])
    theirs = torch.stack([Beta(alpha, beta).sample() for _ in range(300)])
    # Probability-integral transform: under the right distribution both are U(0, 1).
    cdf = stats.beta(alpha.double().numpy(), beta.double().numpy()).cdf
    pit_ours = cdf(ours.double().numpy()).ravel()
    pit_theirs = cdf(theirs.double().numpy()).ravel()
    assert stats.ks_2samp(pit_ours, pit_theirs).pvalue > 1e-3
    assert stats.kstest(pit_ours, "uniform").pvalue > 1e-3


def _assert_fraction(observed: float, expected: float, n: int) -> None:
    assert abs(observed - expected) < 5 * (expected * (1 - expected) / n) ** 0.5 + 1e-4


def test_tiny_concentrations_keep_the_right_tail_mass():
    # Beta(a, 1) has P(X <= x) = x**a. At a = exp(-8) almost every draw underflows float32;
    # in log space the fraction below each threshold is still right.
    a, n = math.exp(-8.0), 100_000
    values = _draws(a, 1.0, n, seed=4).double()
    for threshold in (1e-30, 1e-10, 1e-3):
        _assert_fraction((values <= threshold).double().mean().item(), threshold**a, n)
    assert (values > 0).all() and (values < 1).all()


def test_mass_beyond_float32_resolution_lands_on_the_clamp():
    # Beta(2980, 0.05) puts 2/3 of its mass within 1e-7 of 1, where float32 has one value
    # below 1: draws that round to it or to 1 sit on 1 - 2**-24 (torch's sampler does the
    # same), the rest is resolved.
    n = 100_000
    values = _draws(2980.0, 0.05, n, seed=6).double()
    top = 1.0 - 2.0**-24
    expected = stats.beta(2980.0, 0.05).sf(1.0 - 1.5 * 2.0**-24)  # rounding midpoint
    _assert_fraction((values == top).double().mean().item(), expected, n)
    assert values.max().item() == top


def test_fast_log_prob_agrees_with_torch_and_its_gradient():
    alpha = torch.exp(3 * torch.randn(500)).requires_grad_()
    beta = torch.exp(3 * torch.randn(500)).requires_grad_()
    values = torch.rand(500).clamp(1e-6, 1 - 1e-6)
    ours = beta_log_prob(alpha, beta, values)
    theirs = Beta(alpha, beta).log_prob(values)
    torch.testing.assert_close(ours, theirs)
    (g_ours,) = torch.autograd.grad(ours.sum(), alpha)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), alpha)
    torch.testing.assert_close(g_ours, g_theirs)


def test_torch_method_reproduces_torch_distributions_beta():
    lg = logits(requires_grad=False)
    torch.manual_seed(5)
    ours = BetaSampler(method="torch", sample_eps=0.0)(lg).values
    torch.manual_seed(5)
    theirs = Beta(lg.alpha.exp(), lg.beta.exp()).sample()
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("method", ["torch", "gamma"])
def test_both_methods_guard_and_sample_in_range(method):
    sample = BetaSampler(method=method)(logits(scale=30.0), step=1)
    assert torch.isfinite(sample.log_prob).all()
    assert sample.values.min() >= 1e-6 and sample.values.max() <= 1 - 1e-6


def test_non_finite_concentrations_come_out_nan_without_hanging():
    alpha = torch.tensor([float("inf"), float("nan"), 2.0])
    values = sample_beta(alpha, torch.ones(3))
    assert values[:2].isnan().all() and 0 < values[2] < 1


def test_unknown_method_names_the_setting():
    with pytest.raises(ValueError, match="policy.sampler='beta'"):
        BetaSampler(method="beta")


def test_config_exposes_the_sampler_choice():
    assert load_config().policy.sampler == "gamma"
    assert load_config(overrides=["policy.sampler=torch"]).policy.sampler == "torch"
    with pytest.raises(ConfigError, match="policy.sampler"):
        load_config(overrides=["policy.sampler=numpy"])


def test_build_sampler_follows_the_config():
    from pgnm.config import PolicyConfig
    from pgnm.method import build_sampler

    assert build_sampler(PolicyConfig(sampler="torch")).method == "torch"
    assert build_sampler(PolicyConfig()).method == "gamma"
