"""Conv4's fast paths against the plain layer-by-layer network they replace."""

import copy

import pytest
import torch
from torch import nn

from skmeta.modules import Conv4
from skmeta.optimization import functional_forward, use_task_batch_norm


def _images(n=12, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # Off-centre, as stroke images are: the mean of a patch is far from zero.
    return (torch.rand(n, 1, 16, 16, generator=generator) * 3 + 1).to(dtype)


def _pair(dtype=torch.float32, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("fuse_first_block", True)
    fast = Conv4(input_shape=(1, 16, 16), hidden_channels=8, out_features=3, **kwargs).to(dtype)
    plain = copy.deepcopy(fast)
    plain.fuse_first_block = False
    return fast, plain


def _layer_by_layer(net, X):
    """Conv4 as nn.Sequential would run it: conv, batch norm, ReLU, pool."""
    for block in net.encoder:
        X = block(X)
    return net.head(X.flatten(1))


def _flat_gradient(net, output):
    grads = torch.autograd.grad(output.square().sum(), list(net.parameters()), allow_unused=True,
                                materialize_grads=True)
    return torch.cat([g.flatten() for g in grads])


def _close(a, b, rtol):
    # Relative to the whole vector: a conv bias before batch norm has a true
    # gradient of zero, which one path computes as exactly 0 and the other as
    # rounding noise.
    a, b = a.detach(), b.detach()
    assert float((a - b).norm()) <= rtol * float(b.norm()), float((a - b).norm() / b.norm())


def test_relu_after_pool_computes_the_plain_blocks():
    fast, _ = _pair(fuse_first_block=False)
    X = _images()
    torch.testing.assert_close(fast(X), _layer_by_layer(fast, X), rtol=0, atol=0)
    _close(_flat_gradient(fast, fast(X)), _flat_gradient(fast, _layer_by_layer(fast, X)), rtol=1e-12)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_folded_first_block_equals_convolution_then_batch_norm(dtype, rtol, momentum):
    fast, plain = _pair(dtype)
    for net in (fast, plain):
        net.encoder[0][1].momentum = momentum
    for step, mode in enumerate(["train", "train", "eval"]):
        X = _images(dtype=dtype, seed=step)
        fast.train(mode == "train")
        plain.train(mode == "train")
        out_fast, out_plain = fast(X), plain(X)
        _close(out_fast.flatten(), out_plain.flatten(), rtol)
        _close(_flat_gradient(fast, out_fast), _flat_gradient(plain, out_plain), rtol)
        norm_fast, norm_plain = fast.encoder[0][1], plain.encoder[0][1]
        assert int(norm_fast.num_batches_tracked) == int(norm_plain.num_batches_tracked)
        for name in ("running_mean", "running_var"):
            _close(getattr(norm_fast, name), getattr(norm_plain, name), rtol)


# float64: the second derivative through two batch norms over four support
# images amplifies rounding to about 3e-9.
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-7), (torch.float32, 1e-5)])
def test_folded_first_block_normalises_with_the_reference_rows(dtype, rtol):
    fast, plain = (use_task_batch_norm(net) for net in _pair(dtype))
    X = _images(n=10, dtype=dtype)
    support, query = X[:4], X[4:]
    grads = []
    for net in (fast, plain):
        params = dict(net.named_parameters())
        out = functional_forward(net, params, query, reference=support)
        first = torch.autograd.grad(out.square().sum(), list(params.values()), create_graph=True,
                                    allow_unused=True, materialize_grads=True)
        # Second order, as MAML's meta-gradient needs.
        second = torch.autograd.grad(sum(g.square().sum() for g in first), list(params.values()),
                                     allow_unused=True, materialize_grads=True)
        grads.append((out.flatten(), torch.cat([g.flatten() for g in first]),
                      torch.cat([g.flatten() for g in second])))
    for a, b in zip(*grads):
        _close(a.detach(), b.detach(), rtol)


def test_folded_first_block_under_bfloat16_autocast():
    fast, plain = _pair()
    X = _images()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_fast, out_plain = fast(X).float(), plain(X).float()
    _close(out_fast.flatten(), out_plain.flatten(), rtol=5e-2)
    # The backward runs outside autocast, as a training step's does: the
    # weights' gradients keep their dtype, and bfloat16 moves them from the
    # float32 ones no more than it moves the plain path's (about 5 % and
    # 11 % here; the two bfloat16 results differ by as much again).
    exact = _flat_gradient(plain, plain(X))
    grad_fast, grad_plain = _flat_gradient(fast, out_fast), _flat_gradient(plain, out_plain)
    assert grad_fast.dtype == torch.float32
    error_plain = float((grad_plain - exact).norm() / exact.norm())
    _close(grad_fast, exact, rtol=max(error_plain, 0.05))


@pytest.mark.parametrize("channels", [2, 4])
def test_folded_first_block_over_several_input_channels(channels):
    # The patch rows are channel-major, as the weights are flattened.
    torch.manual_seed(0)
    fast = Conv4(input_shape=(channels, 16, 16), hidden_channels=8, out_features=3, fuse_first_block=True)
    plain = copy.deepcopy(fast)
    plain.fuse_first_block = False
    X = torch.rand(12, channels, 16, 16) * 3 + 1
    out_fast, out_plain = fast(X), plain(X)
    _close(out_fast.flatten(), out_plain.flatten(), 1e-5)
    _close(_flat_gradient(fast, out_fast), _flat_gradient(plain, out_plain), 1e-5)


def test_unfoldable_blocks_take_the_plain_path():
    # Many input channels: the patch covariance would cost more than batch norm.
    fast = Conv4(input_shape=(8, 8, 8), hidden_channels=4, n_blocks=2)
    plain = copy.deepcopy(fast)
    plain.fuse_first_block = False
    X = torch.randn(6, 8 * 8 * 8)
    torch.testing.assert_close(fast(X), plain(X), rtol=0, atol=0)
    assert isinstance(fast.encoder[0][1], nn.BatchNorm2d)


def test_fuse_first_block_is_checked():
    with pytest.raises(ValueError, match="fuse_first_block"):
        Conv4(fuse_first_block="yes")


def test_input_gradients_take_the_layer_by_layer_path():
    # Batch norm's statistics depend on the input: folded statistics carry no
    # graph, so an input that needs its gradient runs the layers one by one.
    fast, plain = _pair(torch.float64)
    X = _images(dtype=torch.float64).requires_grad_()
    grad_fast, = torch.autograd.grad(fast(X).square().sum(), X)
    grad_plain, = torch.autograd.grad(plain(X).square().sum(), X)
    _close(grad_fast.flatten(), grad_plain.flatten(), rtol=1e-12)
