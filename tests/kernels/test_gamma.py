"""The Gamma-based Beta sampler (pgnm.kernels.gamma) draws exactly Beta(a, b): checked against
scipy's distribution and torch's sampler, down to the tails float32 can resolve."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Beta

from pgnm.kernels.gamma import sample_beta

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


def test_non_finite_concentrations_come_out_nan_without_hanging():
    alpha = torch.tensor([float("inf"), float("nan"), 2.0])
    values = sample_beta(alpha, torch.ones(3))
    assert values[:2].isnan().all() and 0 < values[2] < 1
