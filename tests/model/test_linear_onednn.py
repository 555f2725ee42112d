"""The float32 oneDNN linear path (openjmp.models.gemnet_oc.linear) is the same function as
F.linear: values, input/weight gradients, second derivatives, and the whole model in float32."""

import pytest
import torch

from openjmp.models.gemnet_oc import linear as fast
from openjmp.models.gemnet_oc.layers import Dense

needs_onednn = pytest.mark.skipif(not fast._available(), reason="oneDNN not available")


@pytest.fixture
def onednn_on():
    previous = fast.set_onednn_enabled(True)
    yield
    fast.set_onednn_enabled(previous)


def _rel(a, b):
    return float((a - b).detach().abs().max() / b.detach().abs().max())


@needs_onednn
@pytest.mark.parametrize("shape", [(300, 16, 512), (257, 512, 64), (5, 64, 7), (1, 3, 2)])
def test_linear_forward_backward_matches_functional(onednn_on, shape):
    rows, k, n = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, k, generator=g, requires_grad=True)
    w = torch.randn(n, k, generator=g, requires_grad=True)
    gy = torch.randn(rows, n, generator=g)
    assert fast.applies(x, w)
    y = fast.linear(x, w)
    gx, gw = torch.autograd.grad(y, (x, w), gy)
    y_ref = torch.nn.functional.linear(x, w)
    gx_ref, gw_ref = torch.autograd.grad(y_ref, (x, w), gy)
    assert _rel(y, y_ref) < 1e-5
    assert _rel(gx, gx_ref) < 1e-5
    assert _rel(gw, gw_ref) < 1e-5


@needs_onednn
def test_linear_double_backward(onednn_on):
    """d/dw of |d(sum silu(xW^T)^2)/dx|^2 equals the F.linear version (create_graph path)."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(40, 24, generator=g)
    w0 = torch.randn(16, 24, generator=g)

    def second(fn):
        x = x0.clone().requires_grad_(True)
        w = w0.clone().requires_grad_(True)
        e = torch.nn.functional.silu(fn(x, w)).square().sum()
        (dx,) = torch.autograd.grad(e, x, create_graph=True)
        (dw,) = torch.autograd.grad(dx.square().sum(), w)
        return dx.detach(), dw

    dx, dw = second(fast.linear)
    dx_ref, dw_ref = second(torch.nn.functional.linear)
    assert _rel(dx, dx_ref) < 1e-5
    assert _rel(dw, dw_ref) < 1e-5


@needs_onednn
def test_fused_silu_dense_inference(onednn_on):
    torch.manual_seed(2)
    dense = Dense(32, 48, activation="scaled_silu")
    x = torch.randn(100, 32)
    with torch.no_grad():
        y = dense(x)
        fast.set_onednn_enabled(False)
        y_ref = dense(x)
    assert _rel(y, y_ref) < 1e-5


def test_fallbacks_keep_functional_path(onednn_on):
    x64 = torch.randn(3, 4, dtype=torch.float64)
    w64 = torch.randn(5, 4, dtype=torch.float64)
    assert not fast.applies(x64, w64)
    assert torch.equal(fast.linear(x64, w64), torch.nn.functional.linear(x64, w64))
    x = torch.randn(0, 4)
    assert fast.linear(x, torch.randn(5, 4)).shape == (0, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fast.applies(torch.randn(3, 4), torch.randn(5, 4))
    assert fast.linear(torch.randn(2, 3, 4), torch.randn(5, 4)).shape == (2, 3, 5)
