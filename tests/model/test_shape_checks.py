"""The jaxtyping annotations in `model/` are checked at run time under pytest (beartype)."""

import jax
import jax.numpy as jnp
import pytest
from jaxtyping import TypeCheckError

from model.layers import layer_norm
from model.network import PredRNN


def test_layer_norm_refuses_weights_that_would_only_broadcast() -> None:
    x = jnp.ones((2, 4, 4, 3))
    with pytest.raises(TypeCheckError, match="rows cols c"):
        layer_norm(x, jnp.ones((1, 1, 3)), jnp.zeros((1, 1, 3)))


def test_network_refuses_a_mask_for_another_batch(tiny_cfg) -> None:
    net = PredRNN(tiny_cfg, key=jax.random.key(0))
    hp, wp = tiny_cfg.patch_shape
    frames = jnp.zeros((2, tiny_cfg.total_length, hp, wp, tiny_cfg.patch_channels))
    mask = jnp.zeros((3, tiny_cfg.mask_length, 1, 1, 1))
    with pytest.raises(TypeCheckError, match="batch"):
        net(frames, mask)
