"""The convolution primitives against XLA's own convolution and its autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from model import layers
from model.network import PredRNN
from model.strategy import DEFAULT, Strategy, unroll_training


def xla_conv(x, w):
    pad = w.shape[0] // 2
    return lax.conv_general_dilated(
        x, w, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@pytest.mark.parametrize(
    ("batch", "size", "c_in", "c_out", "k", "chunk"),
    [
        (1, 6, 5, 7, 3, 96),  # one weight-gradient chunk
        (3, 5, 4, 200, 5, 96),  # three chunks, the last one short (96 + 96 + 8)
        (3, 5, 4, 200, 5, 0),  # one convolution over all outputs
        (3, 5, 4, 200, 5, 64),  # four chunks (64 x 3 + 8)
        (2, 4, 3, 192, 1, 96),  # 1x1: the einsum path
    ],
)
def test_conv2d_value_and_gradients_equal_xla_autodiff(batch, size, c_in, c_out, k, chunk) -> None:
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (batch, size, size + 1, c_in))
    w = jax.random.normal(kw, (k, k, c_in, c_out)) / np.sqrt(k * k * c_in)
    g = jax.random.normal(kg, (batch, size, size + 1, c_out))
    ours, ours_vjp = jax.vjp(lambda x, w: layers.conv2d(x, w, wgrad_chunk=chunk), x, w)
    want, want_vjp = jax.vjp(xla_conv, x, w)
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-5)
    for got, expected in zip(ours_vjp(g), want_vjp(g), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _bf16(a):
    return a.astype(jnp.bfloat16).astype(jnp.float32)


@pytest.mark.parametrize(
    ("batch", "rows", "cols", "c_in", "c_out", "k"),
    [(3, 5, 9, 4, 24, 5)],
)
def test_bf16_conv2d_is_xla_convolution_of_the_rounded_operands(
    batch, rows, cols, c_in, c_out, k
) -> None:
    """Rounding the operands to bfloat16 is the only change: the value and both gradients
    equal XLA's float32 convolution (and its autodiff) of the rounded input, kernel and
    cotangent, to float32 summation order."""
    kx, kw, kg = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (batch, rows, cols, c_in))
    w = jax.random.normal(kw, (k, k, c_in, c_out)) / np.sqrt(k * k * c_in)
    g = jax.random.normal(kg, (batch, rows, cols, c_out))
    ours, ours_vjp = jax.vjp(lambda x, w: layers.conv2d(x, w, bf16=True), x, w)
    want, want_vjp = jax.vjp(xla_conv, _bf16(x), _bf16(w))
    assert ours.dtype == jnp.float32
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-5)
    for got, expected in zip(ours_vjp(g), want_vjp(_bf16(g)), strict=True):
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # and not the float32 convolution itself: the rounding is real
    assert not np.allclose(ours, xla_conv(x, w), rtol=1e-5, atol=1e-5)


def test_unrolled_and_looped_training_forward_agree(tiny_cfg) -> None:
    """Small configurations unroll the time loop, large ones keep it (or a strategy says which):
    same loss and gradient."""
    net = PredRNN(tiny_cfg, key=jax.random.key(0))
    shape = (2, tiny_cfg.total_length, *tiny_cfg.patch_shape, tiny_cfg.patch_channels)
    frames = jax.random.uniform(jax.random.key(1), shape)
    mask = jnp.full((2, tiny_cfg.mask_length, 1, 1, 1), 0.5)

    def loss(net, strategy):
        out, decouple = net(frames, mask, strategy=strategy)
        return jnp.mean(jnp.square(out - frames[:, 1:])) + decouple

    def value_and_grad(net, strategy=DEFAULT):
        value, grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)(net, strategy)
        return value, jax.tree_util.tree_leaves(grad)

    assert unroll_training(tiny_cfg, 2, tiny_cfg.patch_shape, tiny_cfg.total_length - 1)
    assert not unroll_training(tiny_cfg, 1 << 20, tiny_cfg.patch_shape, tiny_cfg.total_length - 1)
    unrolled = value_and_grad(net)
    looped = value_and_grad(net, Strategy(unroll=False))
    np.testing.assert_allclose(unrolled[0], looped[0], rtol=1e-6)
    for a, b in zip(unrolled[1], looped[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
