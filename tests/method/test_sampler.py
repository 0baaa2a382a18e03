from __future__ import annotations

import pytest
import torch
from torch.distributions import Beta

from pgnm.config import ConfigError, load_config
from pgnm.method import BetaLogits, BetaSampler, NonFiniteError
from pgnm.method.sampler import beta_log_prob


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
