"""The policy network: an image in, Beta logits for every cell of a G x G grid out.

A timm trunk pools the image into a feature vector; two MLP heads map it to G² logits each,
one head for log α and one for log β. What the sampler receives is not the head output alone:
it is mixed with a slowly moving, image-independent running state,

    a(x) = d * base_alpha + (1 - d) * head_alpha(trunk(x))        (d = mixing_decay = 0.9)
    base_alpha <- m * base_alpha + (1 - m) * mean_batch(head_alpha).detach()   (m = 0.99)

and likewise for β. The running state lives in module buffers, so it is checkpointed with the
model, restored on resume and can be averaged across ranks (the official code keeps it in
loose CPU tensors, re-randomises it on resume and lets every rank drift apart).
"""

from __future__ import annotations

from typing import NamedTuple

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BetaLogits(NamedTuple):
    """Per-image, per-cell logits: the Beta concentrations are ``exp(alpha)``, ``exp(beta)``."""

    alpha: Tensor  # (B, G*G)
    beta: Tensor  # (B, G*G)


def _head(in_features: int, hidden: int, cells: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, cells),
    )


class Policy(nn.Module):
    def __init__(
        self,
        grid: int = 64,
        trunk: str = "resnet10t",
        hidden_dim: int = 512,
        mixing_decay: float = 0.9,
        state_momentum: float = 0.99,
        input_size: int | None = None,
        head_passes: int = 1,
    ) -> None:
        super().__init__()
        self.head_passes = head_passes
        self.grid = grid
        self.mixing_decay = mixing_decay
        self.state_momentum = state_momentum
        self.input_size = input_size
        self.trunk = timm.create_model(trunk, pretrained=False, num_classes=0)
        cells = grid * grid
        self.alpha_head = _head(self.trunk.num_features, hidden_dim, cells)
        self.beta_head = _head(self.trunk.num_features, hidden_dim, cells)
        self.register_buffer("base_alpha", torch.rand(1, cells))
        self.register_buffer("base_beta", torch.rand(1, cells))

    def forward(self, images: Tensor) -> BetaLogits:
        if self.input_size is not None and images.shape[-1] != self.input_size:
            # Light policy: the grid it predicts is coarse (64 cells per side by default), so a
            # 64-112 px view carries most of what it needs at a fraction of the trunk's cost.
            images = F.interpolate(
                images,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
            if images.device.type == "cpu":  # oneDNN runs a trunk this small faster in NCHW
                images = images.contiguous()
        features = self.trunk(images)
        head_alpha = self.alpha_head(features)
        head_beta = self.beta_head(features)
        d = self.mixing_decay
        logits = BetaLogits(
            alpha=d * self.base_alpha + (1.0 - d) * head_alpha,
            beta=d * self.base_beta + (1.0 - d) * head_beta,
        )
        if self.training:  # logits above used the state from before this batch, as officially
            if self.head_passes == 2:  # the official code's second pass: same values, but
                with torch.no_grad():  # the heads' BatchNorm statistics move twice per step
                    head_alpha = self.alpha_head(features)
                    head_beta = self.beta_head(features)
            self._update_running_state(head_alpha, head_beta)
        return logits

    @torch.no_grad()
    def _update_running_state(self, head_alpha: Tensor, head_beta: Tensor) -> None:
        m = self.state_momentum
        for state, head in ((self.base_alpha, head_alpha), (self.base_beta, head_beta)):
            state.mul_(m).add_(head.mean(dim=0, keepdim=True).to(state.dtype), alpha=1.0 - m)

    def state_logits(self, batch_size: int = 1) -> BetaLogits:
        """Image-independent logits from the running state alone (the official evaluation mask)."""
        return BetaLogits(
            alpha=self.base_alpha.expand(batch_size, -1),
            beta=self.base_beta.expand(batch_size, -1),
        )

    def running_state(self) -> list[Tensor]:
        """Buffers that must agree across ranks (average them after each step)."""
        return [self.base_alpha, self.base_beta]
