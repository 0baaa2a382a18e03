from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import pgnm.kernels as kernels
from pgnm.config import load_config
from pgnm.kernels import fused
from pgnm.method.mask import apply_mask


def _inputs():
    return torch.randn(2, 3, 32, 32), torch.rand(2, 64)


def test_auto_is_the_default_and_picks_fused_on_cpu():
    images, values = _inputs()
    assert load_config().mask.kernel == "auto"
    assert kernels.resolve_kernel("auto", images, values) == "fused"
    assert torch.equal(apply_mask(images, values), fused.apply_mask(images, values))


def test_every_kernel_agrees_with_the_reference():
    images, values = _inputs()
    expected = apply_mask(images, values, 5, 2.0, kernel="reference")
    for kernel in ("fused", "auto"):
        ours = apply_mask(images, values, 5, 2.0, kernel=kernel)
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_triton_on_cpu_without_the_interpreter_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="mask.kernel='triton'"):
        apply_mask(*_inputs(), kernel="triton")


def test_without_triton_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` fail
    assert not kernels.triton_available()
    assert kernels.resolve_kernel("auto", torch.empty(1, 3, 8, 8)) == "fused"
    with pytest.raises(ValueError, match="mask.kernel='triton' needs the triton package"):
        apply_mask(*_inputs(), kernel="triton")


def test_the_package_works_where_triton_cannot_be_imported():
    code = (
        "import sys; sys.modules['triton'] = None\n"  # as if triton were not installed
        "import torch, pgnm.method.mask as m\n"
        "print(m.apply_mask(torch.rand(1, 3, 16, 16), torch.rand(1, 16), 3, 1.0).shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "torch.Size([1, 3, 16, 16])" in result.stdout


def test_unknown_kernel_lists_the_choices():
    with pytest.raises(ValueError, match="mask.kernel='cuda-magic' is not available.*'fused'"):
        apply_mask(*_inputs(), kernel="cuda-magic")


def test_config_rejects_unknown_kernels():
    with pytest.raises(ValueError, match="mask.kernel"):
        load_config(overrides=["mask.kernel=cuda-magic"])


# ----------------------------------------------------------------------------- safety net


def _interpreted_kernel_module():
    pytest.importorskip("triton")
    import importlib
    import sys

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_INTERPRET", "1")
        name = "pgnm.kernels.triton_kernel"
        module = importlib.reload(sys.modules[name]) if name in sys.modules \
            else importlib.import_module(name)
    return module


def test_a_kernel_that_works_is_checked_once_and_then_used(recwarn):
    from pgnm.kernels.safety import FirstUseCheck

    kernel = _interpreted_kernel_module()
    calls = []

    def fast(images, values, kernel_size, sigma):  # noqa: ANN001, ANN202
        calls.append(1)
        return kernel.apply_mask(images, values, kernel_size, sigma)

    check = FirstUseCheck(fast)
    images, values = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    with torch.no_grad():
        first = check(images, values, 3, 1.0)
        second = check(images, values, 3, 1.0)
    assert torch.allclose(first, fused.apply_mask(images, values, 3, 1.0), atol=1e-5)
    assert torch.equal(first, second) and len(calls) == 2 and check.given_up is None
    assert not [w for w in recwarn if "Triton" in str(w.message)]


def test_a_kernel_that_fails_to_compile_falls_back_with_one_warning():
    triton = pytest.importorskip("triton")
    import triton.language as tl

    from pgnm.kernels.safety import FirstUseCheck

    @triton.jit
    def broken(pointer):  # a name triton.language does not have: fails when compiled
        tl.store(pointer, tl.no_such_builtin(1.0))

    def fast(images, values, kernel_size, sigma):  # noqa: ANN001, ANN202
        broken[(1,)](images)
        return images

    check = FirstUseCheck(fast)
    images, values = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    with pytest.warns(UserWarning, match="Triton kernel failed on first use") as caught:
        out = check(images, values, 3, 1.0)
        again = check(images[:1], values[:1], 3, 1.0)  # another shape: no retry, no warning
    assert len(caught) == 1 and check.given_up is not None
    assert torch.equal(out, fused.apply_mask(images, values, 3, 1.0))
    assert torch.equal(again, fused.apply_mask(images[:1], values[:1], 3, 1.0))
