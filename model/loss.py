"""The PredRNN training objective: MSE over all T-1 predictions + beta * decoupling."""

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

from model.network import PredRNN


class LossParts(NamedTuple):
    mse: Float[Array, ""]
    decouple: Float[Array, ""]
    next_frames: Float[Array, "batch time-1 hp wp cp"]


def predrnn_loss(
    network: PredRNN,
    frames: Float[Array, "batch time hp wp cpin"],
    mask: Float[Array, "batch steps #hp #wp #cp"],
    valid: Float[Array, "batch time hp wp cp"] | None = None,
) -> tuple[Float[Array, ""], LossParts]:
    """Loss of one batch of patched clips, as the official `RNN.forward` computes it.

    `valid` (1 = observed) optionally masks unobserved target pixels out of the MSE;
    without it every element counts equally, as in the official code.
    """
    cfg = network.cfg
    next_frames, decouple = network(frames, mask, with_decouple=cfg.is_v2)
    target = frames[:, 1:, ..., : next_frames.shape[-1]]
    sq = jnp.square(next_frames - target)
    if valid is None:
        mse = jnp.mean(sq)
    else:
        w = jnp.broadcast_to(valid[:, 1:], sq.shape)
        mse = jnp.sum(sq * w) / jnp.maximum(jnp.sum(w), 1.0)
    loss = mse + cfg.decouple_beta * decouple if cfg.is_v2 else mse
    return loss, LossParts(mse, decouple, next_frames)
