"""Pictures a person would rather look at than numbers: mask galleries (paper Fig. 4 style)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from pgnm.atomic import atomic_path  # noqa: E402


def save_mask_gallery(
    images: Tensor,
    masks: Tensor,
    masked: Tensor,
    path: str | Path,
    mean: float = 0.3162,
    std: float = 0.3213,
    title: str = "",
    max_images: int = 6,
) -> Path:
    """Rows: image, mask, masked image. Images are de-normalised to [0, 1] grey for display."""
    n = min(max_images, images.shape[0])
    fig, axes = plt.subplots(3, n, figsize=(2.2 * n, 6.8), squeeze=False)
    show = lambda t: (t[0].float() * std + mean).clamp(0, 1).cpu().numpy()  # noqa: E731
    for i in range(n):
        axes[0, i].imshow(show(images[i]), cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(masks[i, 0].float().cpu().numpy(), cmap="magma", vmin=0, vmax=1)
        axes[2, i].imshow(show(masked[i]), cmap="gray", vmin=0, vmax=1)
    for row, label in enumerate(("image", "mask", "masked")):
        axes[row, 0].set_ylabel(label)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as partial:  # a reader never sees half a PNG
        fig.savefig(partial, dpi=80, format="png")
    plt.close(fig)
    return path
