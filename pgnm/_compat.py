"""Make ``import timm`` work on a CPU-only torch next to PyPI's CUDA torchvision.

timm imports torchvision unconditionally. PyPI only ships CUDA builds of torchvision; on a
CPU build of torch its compiled extension cannot load (it links libtorch_cuda), torchvision
swallows that error, and then ``torchvision/_meta_registrations.py`` registers fake kernels for
``torchvision::nms``/``qnms`` without checking that the operators exist, which raises
``RuntimeError: operator torchvision::nms does not exist`` and takes ``import timm`` down.

The fix: before torchvision is first imported, try to load its extension ourselves. If that
works there is nothing to do; if it fails, declare the two operator schemas so the fake
registrations find them. torchvision's compiled ops stay unavailable, and pgnm needs none.
On a GPU machine with matching CUDA torch and torchvision the extension loads and this is a
no-op.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

_NMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
# The Library must outlive this call, or its definitions are dropped again.
_declared_library: torch.library.Library | None = None


def _torchvision_extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True  # torchvision absent: nothing will try to register its fakes
    extensions = sorted(Path(spec.origin).parent.glob("_C*.so"))
    if not extensions:
        return False
    try:
        torch.ops.load_library(str(extensions[0]))
    except (OSError, RuntimeError):
        return False
    return True


def _operator_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> bool:
    """Declare the missing torchvision operator schemas if needed; True if it had to."""
    global _declared_library
    if _declared_library is not None or "torchvision" in sys.modules:
        return False
    if _operator_exists("nms") or _torchvision_extension_loads():
        return False
    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        if not _operator_exists(op):
            library.define(op + _NMS_SCHEMA)
    _declared_library = library
    return True
