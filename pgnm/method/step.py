"""One PGNM step, the whole method for one batch (``pgnm_step``), and the module holding it.

    logits = policy(x)                  Beta logits per grid cell (policy sees the clean image)
    m, log p = sampler(logits)          one draw per cell, no gradient through m
    x_masked = x * blur(upsample(m))    the noise mask (``mask.apply_mask``)
    loss = objective(classifier(x_masked), y, log p)

With the policy off (``policy.enabled = false``, and always when fine-tuning) the policy, sampler
and mask are skipped: plain cross-entropy, the baseline. With ``policy.learn = false`` the step
is unchanged but the policy is frozen at its start: the random-mask control. Training (the
engine calls the module's forward) and the preview run this function; the mask gallery runs its
first half (``draw_mask``); every mask anyone builds comes from ``mask.apply_mask``.

``PGNMModel`` holds the four parts as one module, not two engines, because the official loss
runs through both networks in one backward pass, which DeepSpeed cannot split across engines.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgnm.config import Config, PolicyConfig
from pgnm.method.mask import apply_mask
from pgnm.method.objective import build_objective
from pgnm.method.policy import BetaLogits, Policy
from pgnm.method.sampler import BetaSampler, MaskSample
from pgnm.models import create_classifier


class StepOutput(NamedTuple):
    loss: Tensor
    ce: Tensor  # detached batch-mean cross-entropy
    policy_term: Tensor | None  # detached objective statistic (None for the baseline)
    logits: Tensor  # classifier logits on the (masked) images
    mask_values: Tensor | None  # (B, G*G) sampled cell values
    problems: Tensor | None = None  # device int: non-finite policy values (sampler.PROBLEMS)
    masked: Tensor | None = None  # the images the classifier saw (None for the baseline)


def build_policy(config: Config) -> Policy:
    p = config.policy
    return Policy(grid=config.mask.grid, trunk=p.trunk, hidden_dim=p.hidden_dim,
                  mixing_decay=p.mixing_decay, state_momentum=p.state_momentum,
                  input_size=p.input_size, head_passes=p.head_passes)


def build_sampler(config: PolicyConfig, raise_now: bool = True) -> BetaSampler:
    return BetaSampler(config.logit_clamp, config.sample_eps, config.check_finite,
                       method=config.sampler, raise_now=raise_now)


def draw_mask(model: PGNMModel, images: Tensor, step: int | None = None) -> MaskSample:
    """The step's first half: the policy's Beta logits for the clean images, one draw per cell
    (the mask gallery shows these)."""
    assert model.policy is not None and model.sampler is not None, "the policy is off"
    alpha, beta = model.policy(images)
    # Beta sampling and log-densities in float32 even when the networks run in bf16.
    return model.sampler(BetaLogits(alpha.float(), beta.float()), step=step)


def pgnm_step(model: PGNMModel, images: Tensor, targets: Tensor,
              step: int | None = None) -> StepOutput:
    """The method for one batch (the module docstring); ``step`` names the training step in a
    non-finite report."""
    if model.policy is None or model.sampler is None:
        logits = model.classifier(images)
        ce = F.cross_entropy(logits, targets)
        return StepOutput(ce, ce.detach(), None, logits, None)
    sample = draw_mask(model, images, step)
    masked = model.mask(images, sample.values)
    logits = model.classifier(masked)
    out = model.objective(logits, targets, sample.log_prob)
    return StepOutput(out.loss, out.ce, out.policy_term, logits, sample.values,
                      sample.problems, masked)


class PGNMModel(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.mask_config = config.mask
        self.classifier = create_classifier(config.model)
        self.policy: Policy | None = build_policy(config) if config.policy.enabled else None
        self.policy_learns = self.policy is not None and config.policy.learn
        if self.policy is not None and not self.policy_learns:
            self.policy.requires_grad_(False).eval()
        self.sampler: BetaSampler | None = (
            # non-finite values are reported in the output, read when the loop looks
            build_sampler(config.policy, raise_now=False) if config.policy.enabled else None
        )
        self.objective = build_objective(config.objective)
        # model.channels_last: every batch is converted once to NHWC here, so the policy trunk,
        # the mask and the classifier all run in it (on CPU, oneDNN's convolutions and pooling
        # are faster in NHWC; same arithmetic up to rounding). The parameters keep the default
        # layout here: oneDNN follows the input's layout, and DeepSpeed views parameters and
        # gradients as flat byte buffers, which fails for channels-last weights under ZeRO
        # (the engine converts them where that is safe: CUDA without ZeRO).
        self.channels_last = config.model.channels_last

    def forward(self, images: Tensor, targets: Tensor, step: int | None = None) -> StepOutput:
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return pgnm_step(self, images, targets, step)

    def train(self, mode: bool = True) -> PGNMModel:
        super().train(mode)
        if self.policy is not None and not self.policy_learns:
            self.policy.eval()  # frozen: its BatchNorm statistics and running state stay put
        return self

    def mask(self, images: Tensor, values: Tensor) -> Tensor:
        """``images`` times the mask of ``values``, with this run's mask settings."""
        m = self.mask_config
        return apply_mask(images, values, m.kernel_size, m.sigma, kernel=m.kernel)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimiser group: the policy trains at its own rate and schedule."""
        groups = {"classifier": list(self.classifier.parameters())}
        if self.policy is not None and self.policy_learns:
            groups["policy"] = list(self.policy.parameters())
        return groups
