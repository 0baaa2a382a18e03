"""What the policy has learnt, in numbers: the Beta distributions it outputs for a probe batch.

For per-image, per-cell concentrations a_bc, b_bc (after the sampler's clamp):

    alpha_mean / alpha_std, beta_mean / beta_std   over every image and cell
    image_var    mean_c Var_b(log a_bc) + mean_c Var_b(log b_bc): how much masks follow the image
    cell_var     Var_c(mean_b log a_bc) + Var_c(mean_b log b_bc): how much they vary over cells
    image_specificity = image_var / (image_var + cell_var); 0: one pattern for every image
    mask_mean    mean of E[m] = a / (a + b): how much signal a mask lets through on average
    entropy      mean differential entropy of Beta(a, b) in nats: 0 for Beta(1, 1), else below
    kl_uniform   mean KL(Beta(a, b) || Beta(1, 1)); the uniform density is 1 on [0, 1], so this
                 is exactly -entropy, named for the question it answers: how far is the policy
                 from uninformative noise?
    draw_mean / draw_std   of one draw per cell: the mask values the classifier would see

The paper objective's policy gradient is CE * sum_c w_c d/dθ log p_c(m_c), with w the softmax
over cells of the drawn log-densities. A score-function term alone averages to zero
(E[d log p(m)] = 0); what moves the policy is the weighting: draws that land where the density
is high count more, so descending lowers the density where it is high. In expectation that is
the score-function gradient of E[p(m)] = integral of p², which is smallest (1) for the uniform.
So with any positive CE the objective pulls every cell toward spread-out noise, Beta(1, 1)
(entropy up to 0, kl_uniform down to 0), whatever the classifier finds hard; the classifier's
loss only sets the pace. REINFORCE instead credits each image's mask with its own
(baseline-centred) loss. These numbers show what a run does.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Beta

from pgnm.method.policy import BetaLogits
from pgnm.method.sampler import BetaSampler

PREFIX = "policy/"
NAMES = ("alpha_mean", "alpha_std", "beta_mean", "beta_std", "image_var", "cell_var",
         "image_specificity", "mask_mean", "entropy", "kl_uniform", "draw_mean", "draw_std")


@torch.no_grad()
def policy_diagnostics(logits: BetaLogits, sampler: BetaSampler,
                       draws: Tensor | None = None) -> dict[str, float]:
    """``policy/<name>`` for the logits of a probe batch (B, G²); ``draws``: one draw per cell."""
    a, b = sampler.concentrations(BetaLogits(logits.alpha.double(), logits.beta.double()))
    log_a, log_b = a.log(), b.log()
    image_var = float(_across_images(log_a) + _across_images(log_b))
    cell_var = float(log_a.mean(0).var(unbiased=False) + log_b.mean(0).var(unbiased=False))
    entropy = float(Beta(a, b).entropy().mean())
    out = {
        "alpha_mean": float(a.mean()), "alpha_std": float(a.std(unbiased=False)),
        "beta_mean": float(b.mean()), "beta_std": float(b.std(unbiased=False)),
        "image_var": image_var, "cell_var": cell_var,
        "image_specificity": image_var / (image_var + cell_var) if image_var + cell_var else 0.0,
        "mask_mean": float((a / (a + b)).mean()),
        "entropy": entropy, "kl_uniform": -entropy,
    }
    if draws is not None:
        out["draw_mean"] = float(draws.double().mean())
        out["draw_std"] = float(draws.double().std(unbiased=False))
    return {f"{PREFIX}{name}": value for name, value in out.items()}


def _across_images(values: Tensor) -> Tensor:
    """Mean over cells of the variance over images (0 for a batch of one image)."""
    if values.shape[0] < 2:
        return values.new_zeros(())
    return values.var(dim=0, unbiased=False).mean()
