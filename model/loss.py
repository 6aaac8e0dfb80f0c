"""The PredRNN training objective: MSE over all T-1 predictions + beta * decoupling.

`LossConfig` optionally replaces the plain MSE (the official objective, the default) with the
rain-weighted MSE + MAE of the HKO-7 benchmark (Shi et al. 2017, "balanced" B-MSE + B-MAE):
every target pixel is weighted by its rain class, so that the rare heavy rain that matters is
not drowned by the dry and light pixels, which plain MSE rewards with a blurred, shrinking
forecast. The thresholds are in model units (the CLI converts them from mm/h).
"""

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

from model.lagrangian import to_eulerian, to_lagrangian
from model.network import PredRNN
from model.patch import reshape_patch, reshape_patch_back


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossConfig:
    """The data term. ``kind="mse"``: the official MSE. ``kind="weighted"``: the mean of
    w·(error² + |error|) where w is ``weights[k]`` for targets at or above ``thresholds[k]``
    (the highest one reached) and 1 below the first."""

    kind: str = "mse"
    thresholds: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("mse", "weighted"):
            raise ValueError(f"LossConfig.kind={self.kind!r}: must be 'mse' or 'weighted'")
        if len(self.thresholds) != len(self.weights):
            raise ValueError(
                f"LossConfig: {len(self.thresholds)} thresholds but {len(self.weights)} weights"
            )
        if list(self.thresholds) != sorted(self.thresholds):
            raise ValueError(f"LossConfig.thresholds={self.thresholds!r}: must increase")
        if self.kind == "weighted" and not self.thresholds:
            raise ValueError("LossConfig: kind 'weighted' needs thresholds and weights")


OFFICIAL_LOSS = LossConfig()


def pixel_weights(target: Array, loss: LossConfig) -> Array:
    """The rain-class weight of every target pixel (1 below the first threshold)."""
    w = jnp.ones_like(target)
    for threshold, weight in zip(loss.thresholds, loss.weights, strict=True):
        w = jnp.where(target >= threshold, weight, w)
    return w


class LossParts(NamedTuple):
    mse: Float[Array, ""]
    decouple: Float[Array, ""]
    next_frames: Float[Array, "batch time-1 hp wp cp"]


def predrnn_loss(
    network: PredRNN,
    frames: Float[Array, "batch time hp wp cpin"],
    mask: Float[Array, "batch steps #hp #wp #cp"],
    valid: Float[Array, "batch time hp wp cp"] | None = None,
    loss: LossConfig = OFFICIAL_LOSS,
) -> tuple[Float[Array, ""], LossParts]:
    """Loss of one batch of patched clips, as the official `RNN.forward` computes it.

    `valid` (1 = observed) optionally masks unobserved target pixels out of the MSE;
    without it every element counts equally, as in the official code. `mse` in the parts
    is always the plain (masked) MSE; the returned loss uses `loss`'s data term.
    """
    cfg = network.cfg
    next_frames, decouple = network(frames, mask, with_decouple=cfg.is_v2)
    target = frames[:, 1:, ..., : next_frames.shape[-1]]
    w = None if valid is None else jnp.broadcast_to(valid[:, 1:], next_frames.shape)
    return _objective(network, next_frames, target, w, decouple, loss)


def lagrangian_loss(
    network: PredRNN,
    clips: Float[Array, "batch time height width channels"],
    mask: Float[Array, "batch steps #hp #wp #cp"],
    valid: Float[Array, "batch time height width #channels"] | None,
    loss: LossConfig,
    motion: Float[Array, "batch height width 2"],
) -> tuple[Float[Array, ""], LossParts]:
    """`predrnn_loss` of a Lagrangian network (`model.lagrangian`) on image-space clips.

    The network runs on the clip advected to the newest context frame's time; its forecasts
    are advected forward to their valid times and scored there, against the clip as observed.
    A target pixel whose forecast has no data (advected in from outside) does not count.
    `next_frames` in the parts are the advected forecasts (image space).
    """
    cfg = network.cfg
    p, reference = cfg.patch_size, cfg.input_length - 1
    moved, _ = to_lagrangian(clips, motion, reference)
    next_frames, decouple = network(reshape_patch(moved, p), mask, with_decouple=cfg.is_v2)
    forecast, inside = to_eulerian(reshape_patch_back(next_frames, p), motion, 1 - reference)
    target = clips[:, 1:, ..., : forecast.shape[-1]]
    w = jnp.broadcast_to(inside, forecast.shape)
    if valid is not None:
        w = w * jnp.broadcast_to(valid[:, 1:], forecast.shape)
    return _objective(network, forecast, target, w, decouple, loss)


def _objective(
    network: PredRNN,
    forecast: Array,
    target: Array,
    w: Array | None,
    decouple: Float[Array, ""],
    loss: LossConfig,
) -> tuple[Float[Array, ""], LossParts]:
    """The data term over the pixels weighted by `w` (all of them if None), plus decoupling."""
    cfg = network.cfg
    err = forecast - target
    sq = jnp.square(err)
    if w is None:
        norm: Array | float = float(sq.size)
        mse = jnp.mean(sq)
    else:
        norm = jnp.maximum(jnp.sum(w), 1.0)
        mse = jnp.sum(sq * w) / norm
    data = mse
    if loss.kind == "weighted":
        weights = pixel_weights(target, loss) if w is None else w * pixel_weights(target, loss)
        data = jnp.sum(weights * (sq + jnp.abs(err))) / norm
    total = data + cfg.decouple_beta * decouple if cfg.is_v2 else data
    return total, LossParts(mse, decouple, forecast)
