"""The training objectives: how the classifier's cross-entropy drives both networks.

Both take the classifier's logits on the masked images, the labels, and the per-cell
log-probabilities of the sampled mask (B, G²), and return one scalar to call backward on.

``paper`` -- the official code, exactly:

    loss = CE_mean * S,   S = mean_b log sum_c exp(log p_bc)

  The classifier gets S * dCE (S ~ log G² ~ 8.3 at G = 64: an implicit learning-rate factor,
  see the method card); the policy gets CE * dS, a soft maximum over cells rather than a joint
  log-likelihood, and one batch-mean cost for every image.

``reinforce`` -- textbook REINFORCE with a moving-average baseline:

    C_b = CE(x_b) (detached),  log pi_b = sum_c log p_bc,  A_b = C_b - baseline
    loss = CE_mean + w * mean_b(A_b * log pi_b)

  The classifier trains on plain CE; each image's mask is credited with its own cost.

Descending on cost * log-prob makes masks that *lower* the classifier's loss more likely: the
policy cooperates with the classifier, as in the official code.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgnm.config import ObjectiveConfig


class ObjectiveOutput(NamedTuple):
    loss: Tensor  # scalar to call backward on
    ce: Tensor  # detached batch-mean cross-entropy, for logging
    policy_term: Tensor  # detached: S for "paper", mean advantage * log pi for "reinforce"


class PaperObjective(nn.Module):
    def __init__(self, stable_logsumexp: bool = True) -> None:
        super().__init__()
        self.stable_logsumexp = stable_logsumexp

    def forward(self, logits: Tensor, targets: Tensor, log_prob: Tensor) -> ObjectiveOutput:
        ce = F.cross_entropy(logits, targets)  # not detached: the classifier is scaled by S
        if self.stable_logsumexp:
            per_image = torch.logsumexp(log_prob, dim=1)
        else:  # the official expression; overflows to inf once a density passes ~1e38
            per_image = torch.log(torch.sum(log_prob.exp(), dim=1))
        loss = torch.mean(per_image * ce)
        return ObjectiveOutput(loss, ce.detach(), per_image.mean().detach())


class ReinforceObjective(nn.Module):
    def __init__(self, baseline_momentum: float = 0.9, policy_weight: float = 1.0) -> None:
        super().__init__()
        self.baseline_momentum = baseline_momentum
        self.policy_weight = policy_weight
        # A buffer, so it is checkpointed and can be averaged across ranks with the policy state.
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("baseline_ready", torch.zeros((), dtype=torch.bool))

    def forward(self, logits: Tensor, targets: Tensor, log_prob: Tensor) -> ObjectiveOutput:
        ce_per_image = F.cross_entropy(logits, targets, reduction="none")
        cost = ce_per_image.detach()
        # Before the first update there is no history: the batch mean is the best guess.
        baseline = torch.where(self.baseline_ready, self.baseline, cost.mean())
        advantage = cost - baseline
        policy_term = (advantage * log_prob.sum(dim=1)).mean()
        loss = ce_per_image.mean() + self.policy_weight * policy_term
        if self.training:  # update after use, so each step's advantage ignores its own cost
            with torch.no_grad():
                m = self.baseline_momentum
                self.baseline.copy_(m * baseline + (1.0 - m) * cost.mean())
                self.baseline_ready.fill_(True)
        return ObjectiveOutput(loss, cost.mean(), policy_term.detach())


def build_objective(config: ObjectiveConfig) -> PaperObjective | ReinforceObjective:
    if config.name == "paper":
        return PaperObjective(stable_logsumexp=config.stable_logsumexp)
    return ReinforceObjective(config.baseline_momentum, config.policy_weight)
