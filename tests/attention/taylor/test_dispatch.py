"""The dispatch point: which kernels a call takes, the line that says so, and DLLAB_NATIVE=0."""

import os
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from dllab.attention import TaylorFeatureMap, kernel_path
from dllab.attention.taylor import dispatch
from dllab.attention.taylor.fused import native

needs_native = pytest.mark.skipif(native.library() is None, reason=native.status())


def _qv(d=16, dv=16, dtype=torch.float32):
    return torch.zeros(1, 2, 8, d, dtype=dtype), torch.zeros(1, 2, 8, dv, dtype=dtype)


@needs_native
@pytest.mark.parametrize(
    "make, causal, path",
    [
        (lambda: (TaylorFeatureMap(16, 3), *_qv()), True, "fused"),
        (lambda: (TaylorFeatureMap(16, 2), *_qv(dtype=torch.float64)), False, "fused"),
        (lambda: (TaylorFeatureMap(16, 4), *_qv()), False, "plain"),
        (lambda: (TaylorFeatureMap(4, 3, form="outer"), *_qv(4, 4)), True, "plain"),
        (lambda: (lambda x: F.elu(x) + 1, *_qv()), False, "plain"),
        (lambda: (TaylorFeatureMap(16, 3), *_qv(dtype=torch.bfloat16)), False, "plain"),
        (lambda: (TaylorFeatureMap(48, 3), *_qv(48, 48)), False, "fused"),
        (lambda: (TaylorFeatureMap(48, 3), *_qv(48, 48)), True, "plain"),
        (lambda: (TaylorFeatureMap(16, 3), *_qv(16, 40)), True, "plain"),
    ],
    ids=["K3-causal", "K2-f64", "K4", "outer", "any-map", "bf16", "D48-full", "D48-causal", "V40-causal"],
)
def test_kernel_path(make, causal, path):
    fm, q, v = make()
    assert kernel_path(fm, q, v, causal) == path


@needs_native
def test_status_names_the_fused_kernels():
    line = dispatch.status()
    assert line.startswith("Taylor attention: fused kernels (native.c built with ") and ".so" in line


def test_status_says_why_the_plain_path_runs(monkeypatch):
    native.library()  # settle its status, then hide the library
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setattr(native, "_status", "off: no C compiler found ($CC, cc, gcc)")
    assert dispatch.status() == "Taylor attention: plain PyTorch kernels, fused off: no C compiler found ($CC, cc, gcc)"
    assert kernel_path(TaylorFeatureMap(16, 3), *_qv(), causal=False) == "plain"


def test_environment_turns_the_fused_kernels_off():
    env = {**os.environ, "DLLAB_NATIVE": "0"}
    code = (
        "import torch\n"
        "from dllab.attention import TaylorFeatureMap, kernel_path, linear_attention, naive_linear_attention\n"
        "from dllab.attention.taylor import dispatch\n"
        "q, k, v = (torch.randn(1, 2, 40, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))\n"
        "fm = TaylorFeatureMap(4, 3)\n"
        "for causal in (False, True):\n"
        "    assert kernel_path(fm, q, v, causal) == 'plain'\n"
        "    a = torch.autograd.grad(linear_attention(q, k, v, fm, causal=causal).sum(), q)[0]\n"
        "    b = torch.autograd.grad(naive_linear_attention(q, k, v, fm, causal=causal).sum(), q)[0]\n"
        "    torch.testing.assert_close(a, b)\n"
        "print(dispatch.status())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Taylor attention: plain PyTorch kernels, fused off (DLLAB_NATIVE=0)"
