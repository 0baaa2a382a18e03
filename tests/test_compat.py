"""``import pgnm`` makes timm (and torchvision's Python side) importable on CPU-only torch."""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_timm_imports_after_pgnm_in_a_fresh_interpreter():
    result = run_python(
        "import pgnm, timm, torch\n"
        "from torchvision.transforms import v2\n"
        "m = timm.create_model('resnet10t', num_classes=3).eval()\n"
        "print(tuple(m(torch.zeros(1, 3, 32, 32)).shape))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 3)"


def test_patch_is_idempotent_and_a_no_op_once_torchvision_is_loaded():
    result = run_python(
        "import pgnm, timm\n"
        "from pgnm._compat import ensure_torchvision_importable\n"
        "print(ensure_torchvision_importable(), ensure_torchvision_importable())\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False"
