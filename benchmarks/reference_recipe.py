"""The official PGNM pipeline's operations, re-implemented plainly: the yardstick for pgnm.

Written from the method as the official code implements it (pgnm/method/README.md), not
copied from that code. What it does per step, the way that code does it:

* policy: timm ``resnet10t`` trunk (``num_classes=0``, 512-d), two heads
  Linear-BN-ReLU-Linear-BN-ReLU-Linear(G²); logits ``0.9 * base + 0.1 * head``; the running
  state ``base <- 0.99 base + 0.01 mean_b(head).detach()`` is updated in ``forward`` by calling
  each head a second time (so each head runs twice per step, as officially);
* ``torch.distributions.Beta(exp a, exp b).sample()`` and ``.log_prob`` (argument validation on,
  the default);
* mask: ``F.interpolate`` (nearest) to the crop size, torchvision ``gaussian_blur(k=13, σ=6)``,
  multiplied into the normalised image;
* loss ``mean(log(sum(exp(log p), 1)) * CE_mean)``, one backward, two SGD optimisers
  (classifier lr 0.1, policy lr 0.01, momentum 0.9, wd 1e-4);
* data: torchvision ``ImageFolder`` + PIL RandomResizedCrop / flip / ToTensor / Normalize in a
  ``DataLoader``.

A world of one runs without a DDP wrapper; ``wrap_ddp`` wraps both networks the official way
when a process group is up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import pgnm  # noqa: F401  (before timm: makes torchvision importable on CPU-only torch)

# isort: split
import timm

MEAN, STD = 0.3162, 0.3213


def _head(features: int, cells: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(features, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(),
        nn.Linear(512, cells),
    )


class MaskGenerator(nn.Module):
    """The official policy: Beta logits per grid cell, running state updated in forward."""

    def __init__(self, grid: int = 64, trunk: str = "resnet10t", decay: float = 0.9) -> None:
        super().__init__()
        self.trunk = timm.create_model(trunk, pretrained=False, num_classes=0)
        self.alpha = _head(self.trunk.num_features, grid * grid)
        self.beta = _head(self.trunk.num_features, grid * grid)
        self.decay = decay
        # Plain tensors, not buffers, as in the official code.
        self.base_alpha = torch.rand(1, grid * grid)
        self.base_beta = torch.rand(1, grid * grid)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = self.trunk(images)
        a = self.decay * self.base_alpha + (1 - self.decay) * self.alpha(x)
        b = self.decay * self.base_beta + (1 - self.decay) * self.beta(x)
        self.base_alpha = 0.99 * self.base_alpha + 0.01 * self.alpha(x).mean(0).detach()
        self.base_beta = 0.99 * self.base_beta + 0.01 * self.beta(x).mean(0).detach()
        return a, b


class ReferenceStep:
    """One training step of the official recipe; ``policy=False`` is the plain-CE baseline."""

    def __init__(
        self,
        arch: str,
        num_classes: int,
        policy: bool = True,
        grid: int = 64,
        kernel_size: int = 13,
        sigma: int = 6,
        lr: float = 0.1,
    ) -> None:
        self.model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4
        )
        self.policy = MaskGenerator(grid) if policy else None
        self.policy_optimizer = (  # the official policy rate is the classifier's / 10
            torch.optim.SGD(self.policy.parameters(), lr=lr / 10, momentum=0.9, weight_decay=1e-4)
            if self.policy is not None
            else None
        )
        self.criterion = nn.CrossEntropyLoss()
        self.grid, self.kernel_size, self.sigma = grid, kernel_size, sigma
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> ReferenceStep:
        """Both networks and the running state on ``device`` (the official script's .cuda())."""
        self.device = torch.device(device)
        self.model.to(self.device)
        if self.policy is not None:
            self.policy.to(self.device)
            self.policy.base_alpha = self.policy.base_alpha.to(self.device)
            self.policy.base_beta = self.policy.base_beta.to(self.device)
        return self

    def __call__(self, images: Tensor, targets: Tensor) -> float:
        from torchvision.transforms.functional import gaussian_blur

        # as the official loop does: image.to(device, non_blocking=True) for each batch
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        self.model.train()
        if self.policy is None:
            loss = self.criterion(self.model(images), targets)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            return loss.item()
        self.policy.train()
        a, b = self.policy(images)
        dist = torch.distributions.Beta(a.exp(), b.exp())
        sample = dist.sample()
        logp = dist.log_prob(sample)
        mask = sample.view(-1, 1, self.grid, self.grid)
        size = images.shape[-1]
        if self.grid != size:
            mask = F.interpolate(mask, size=(size, size))
        mask = gaussian_blur(mask, kernel_size=self.kernel_size, sigma=self.sigma)
        ce = self.criterion(self.model(images * mask), targets)
        loss = torch.mean(torch.log(torch.sum(logp.exp(), 1)) * ce)
        self.optimizer.zero_grad()
        self.policy_optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.policy_optimizer.step()
        return loss.item()

    def wrap_ddp(self) -> None:
        """Wrap both networks in DDP, as the official script does under torchrun."""
        self.model = nn.parallel.DistributedDataParallel(self.model)
        if self.policy is not None:
            self.policy = nn.parallel.DistributedDataParallel(self.policy)


def reference_loader(folder, batch: int, workers: int, size: int = 224):  # noqa: ANN001, ANN201
    """The official training loader, as its presets.py builds it (PIL backend)."""
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    transform = T.Compose(
        [
            T.RandomResizedCrop(size, antialias=True),
            T.RandomHorizontalFlip(0.5),
            T.PILToTensor(),
            T.ConvertImageDtype(torch.float),
            T.Normalize([MEAN] * 3, [STD] * 3),
        ]
    )
    dataset = ImageFolder(str(folder), transform=transform)
    if len(dataset) < batch:
        raise ValueError(f"{folder}: {len(dataset)} images, fewer than one batch of {batch}")
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
