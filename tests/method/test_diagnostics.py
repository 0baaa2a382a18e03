import math

import pytest
import torch
from scipy import stats

from pgnm.method import BetaLogits, BetaSampler
from pgnm.method.diagnostics import policy_diagnostics

SAMPLER = BetaSampler(logit_clamp=8.0)


def _logits(alpha, beta):
    return BetaLogits(torch.as_tensor(alpha, dtype=torch.float32).log(),
                      torch.as_tensor(beta, dtype=torch.float32).log())


def test_uniform_noise_has_zero_entropy_and_divergence():
    d = policy_diagnostics(_logits(torch.ones(4, 9), torch.ones(4, 9)), SAMPLER)
    assert d["policy/entropy"] == pytest.approx(0.0, abs=1e-7)
    assert d["policy/kl_uniform"] == pytest.approx(0.0, abs=1e-7)
    assert d["policy/mask_mean"] == pytest.approx(0.5)
    assert d["policy/image_var"] == d["policy/cell_var"] == d["policy/image_specificity"] == 0.0


def test_numbers_match_scipy_for_a_known_grid():
    alpha = torch.tensor([[2.0, 0.5, 3.0], [2.0, 0.5, 3.0]])
    beta = torch.tensor([[5.0, 0.5, 1.0], [5.0, 0.5, 1.0]])
    d = policy_diagnostics(_logits(alpha, beta), SAMPLER, draws=torch.tensor([[0.2, 0.4]]))
    entropy = stats.beta.entropy(alpha.numpy(), beta.numpy()).mean()
    assert d["policy/entropy"] == pytest.approx(entropy, rel=1e-6)
    assert d["policy/kl_uniform"] == pytest.approx(-entropy, rel=1e-6)
    assert d["policy/mask_mean"] == pytest.approx((alpha / (alpha + beta)).mean().item())
    assert d["policy/alpha_mean"] == pytest.approx(11 / 6)
    assert d["policy/alpha_std"] == pytest.approx(alpha.std(unbiased=False).item())
    assert d["policy/draw_mean"] == pytest.approx(0.3)
    assert d["policy/draw_std"] == pytest.approx(0.1)
    # every image gets the same distributions: all variation is over cells
    assert d["policy/image_var"] == 0.0 and d["policy/image_specificity"] == 0.0
    cell = torch.var(alpha[0].log(), unbiased=False) + torch.var(beta[0].log(), unbiased=False)
    assert d["policy/cell_var"] == pytest.approx(cell.item(), rel=1e-6)


def test_image_specific_masks_score_one():
    """Each image its own Beta, the same over its cells: the masks depend on the image alone."""
    alpha = torch.tensor([[1.0] * 4, [4.0] * 4])
    d = policy_diagnostics(_logits(alpha, torch.ones(2, 4)), SAMPLER)
    assert d["policy/cell_var"] == 0.0
    assert d["policy/image_var"] == pytest.approx(math.log(4.0) ** 2 / 4, rel=1e-6)
    assert d["policy/image_specificity"] == pytest.approx(1.0)


def test_the_sampler_clamp_applies():
    """Diagnostics describe the distributions actually drawn from: logits beyond the clamp."""
    far = BetaLogits(torch.full((1, 2), 20.0), torch.zeros(1, 2))
    assert policy_diagnostics(far, SAMPLER)["policy/alpha_mean"] == pytest.approx(math.exp(8.0))
