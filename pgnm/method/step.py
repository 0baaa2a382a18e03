"""The joint module one training engine wraps: classifier, policy and objective together.

One module (not two engines) because the official loss runs through both networks in one
backward pass, which DeepSpeed cannot split across engines. The forward pass
is the whole method for one batch:

    logits = policy(x)                  Beta logits per grid cell (policy sees the clean image)
    m, log p = sampler(logits)          one draw per cell, no gradient through m
    x_masked = x * blur(upsample(m))    the noise mask
    loss = objective(classifier(x_masked), y, log p)

With ``policy.enabled = false`` the policy, sampler and mask are skipped: plain CE, the baseline.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgnm.config import Config
from pgnm.mask import apply_mask
from pgnm.method import (
    BetaLogits,
    BetaSampler,
    Policy,
    build_objective,
    build_policy,
    build_sampler,
)
from pgnm.models import create_classifier


class StepOutput(NamedTuple):
    loss: Tensor
    ce: Tensor  # detached batch-mean cross-entropy
    policy_term: Tensor | None  # detached objective statistic (None for the baseline)
    logits: Tensor  # classifier logits on the (masked) images
    mask_values: Tensor | None  # (B, G*G) sampled cell values
    problems: Tensor | None = None  # device int: non-finite policy values (sampler.PROBLEMS)


class PGNMModel(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.mask_config = config.mask
        self.classifier = create_classifier(config.model)
        self.policy: Policy | None = build_policy(config) if config.policy.enabled else None
        self.sampler: BetaSampler | None = (
            # non-finite values are reported in the output, read when the loop looks
            build_sampler(config.policy, raise_now=False) if config.policy.enabled else None
        )
        self.objective = build_objective(config.objective)
        # model.channels_last: every batch is converted once to NHWC here, so the policy trunk,
        # the mask and the classifier all run in it (on CPU, oneDNN's convolutions and pooling
        # are faster in NHWC; same arithmetic up to rounding). The parameters keep the default
        # layout: oneDNN follows the input's layout, and DeepSpeed views parameters and
        # gradients as flat byte buffers, which fails for channels-last weights.
        self.channels_last = config.model.channels_last
        if self.channels_last:
            self.to(memory_format=torch.contiguous_format)

    def forward(self, images: Tensor, targets: Tensor, step: int | None = None) -> StepOutput:
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.policy is None or self.sampler is None:
            logits = self.classifier(images)
            ce = F.cross_entropy(logits, targets)
            return StepOutput(ce, ce.detach(), None, logits, None)
        alpha, beta = self.policy(images)
        # Beta sampling and log-densities in float32 even when the networks run in bf16.
        sample = self.sampler(BetaLogits(alpha.float(), beta.float()), step=step)
        masked = self.mask(images, sample.values)
        logits = self.classifier(masked)
        out = self.objective(logits, targets, sample.log_prob)
        return StepOutput(out.loss, out.ce, out.policy_term, logits, sample.values,
                          sample.problems)

    def mask(self, images: Tensor, values: Tensor) -> Tensor:
        m = self.mask_config
        return apply_mask(images, values, m.kernel_size, m.sigma, kernel=m.kernel)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimiser group: the policy trains at its own rate and schedule."""
        groups = {"classifier": list(self.classifier.parameters())}
        if self.policy is not None:
            groups["policy"] = list(self.policy.parameters())
        return groups
