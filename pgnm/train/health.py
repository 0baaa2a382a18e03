"""What the host reads from the device, and when: non-finite values and the running sums.

A training step reads nothing from the device. Each step's forward pass reports NaN/inf in
the policy's logits and log-probabilities (``MaskSample.problems``) and in the loss as bits
of a device integer; :class:`Health` ORs them together and keeps the first bad step, and the
epoch's loss sums accumulate on the device too. The loop *looks* -- one device-to-host copy
of all of it -- every ``tracking.log_every`` steps, before every checkpoint, when the run
stops and at the end of each epoch; every rank looks at the same steps, so a non-finite
value on any rank stops them all there, naming the first bad step, and no checkpoint is
ever written after one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pgnm.errors import TrainingDiverged
from pgnm.method.sampler import describe_problems, flag_nonfinite

LOSS_BIT = 8


def host_values(*tensors: Tensor) -> list[float]:
    """Several device scalars in one device-to-host copy (one synchronisation on a GPU)."""
    packed = torch.stack([t.detach().reshape(()).to(torch.float64) for t in tensors])
    return packed.to("cpu", copy=True).tolist()


class Health:
    def __init__(self, device: torch.device) -> None:
        self.problems = torch.zeros((), dtype=torch.int32, device=device)
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)

    def record(self, loss: Tensor, problems: Tensor | None, step: int) -> None:
        found = flag_nonfinite(loss.detach(), LOSS_BIT)
        if problems is not None:
            found = found | problems
        first = (self.problems == 0) & (found != 0)
        self.first_bad_step = torch.where(first, step, self.first_bad_step)
        self.problems |= found

    def tensors(self) -> tuple[Tensor, Tensor]:
        """Read these with the rest of a look's values, then pass them to :meth:`verdict`."""
        return self.problems, self.first_bad_step

    @staticmethod
    def verdict(problems: float, first_bad_step: float, rank: int) -> TrainingDiverged | None:
        if not problems:
            return None
        step = int(first_bad_step)
        return TrainingDiverged(f"non-finite value at step {step} on rank {rank}: "
                                f"{describe_problems(int(problems))}")
