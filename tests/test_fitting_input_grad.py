"""The explicit input-gradient backward of tanh fitting nets (mlpot.nn.input_gradients_only) equals
autograd through the plain layers, and refuses what it cannot give (second derivatives)."""

import pytest
import torch

from mlpot.nn import FittingNet, input_gradients_only


@pytest.mark.parametrize("neuron,resnet_dt", [((16, 16, 32), True), ((8, 12), False), ((24, 24), True)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_input_gradient_equals_autograd(neuron, resnet_dt, dtype):
    g = torch.Generator().manual_seed(3)
    net = FittingNet(16, neuron, 1, "tanh", resnet_dt, dtype, g)  # 16 → 16: identity skip; 16 → 32: (x, x) skip
    x = torch.randn(50, 16, generator=g, dtype=torch.float64).to(dtype)
    xa = x.clone().requires_grad_(True)
    ya = net(xa)
    (ga,) = torch.autograd.grad(ya.sum(), xa)
    xb = x.clone().requires_grad_(True)
    with input_gradients_only():
        yb = net(xb)
        assert yb.grad_fn is not None and "FittingInputGrad" in type(yb.grad_fn).__name__
        (gb,) = torch.autograd.grad(yb.sum(), xb)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(ya, yb, rtol=tol, atol=tol)
    assert torch.allclose(ga, gb, rtol=tol, atol=tol)
    # finite differences of the energy along a random direction (float64 only)
    if dtype == torch.float64:
        v = torch.randn(x.shape, generator=g, dtype=dtype)
        h = 1e-6
        with torch.no_grad():
            fd = (net(x + h * v).sum() - net(x - h * v).sum()) / (2 * h)
        assert float(fd) == pytest.approx(float((gb * v).sum()), rel=1e-7, abs=1e-9)


def test_other_activations_and_second_derivatives_use_autograd():
    net = FittingNet(8, (8,), 1, "gelu", True, torch.float64)
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    with input_gradients_only():
        assert "FittingInputGrad" not in type(net(x).grad_fn).__name__
    tanh_net = FittingNet(8, (8,), 1, "tanh", True, torch.float64)
    with input_gradients_only():
        y = tanh_net(x).sum()
    with pytest.raises(RuntimeError, match="not twice differentiable"):
        torch.autograd.grad(y, x, create_graph=True)
