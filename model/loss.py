"""The PredRNN training objective: MSE over all T-1 predictions + beta * decoupling.

`LossConfig` optionally replaces the plain MSE (the official objective, the default) with the
rain-weighted MSE + MAE of the HKO-7 benchmark (Shi et al. 2017, "balanced" B-MSE + B-MAE):
every target pixel is weighted by its rain class, so that the rare heavy rain that matters is
not drowned by the dry and light pixels, which plain MSE rewards with a blurred, shrinking
forecast. The thresholds are in model units (the CLI converts them from mm/h).

Beside either, `LossConfig` may add the terms of `model.objectives` that do not pay for blur,
each with its own weight (0, the default, leaves it out of the traced program): the Fourier
amplitude and correlation terms (FACL) and NowcastNet's intensity-weighted L1. A Lagrangian
network with `ModelConfig.match_extrapolation` is scored on its rank-matched leads, as it
forecasts (`model.rank_matching`).
"""

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

from model.lagrangian import (
    crop,
    embed,
    extrapolation,
    to_eulerian,
    to_lagrangian,
    with_no_data,
)
from model.network import PredRNN
from model.objectives import fourier_amplitude, fourier_correlation, intensity_l1
from model.patch import reshape_patch, reshape_patch_back
from model.rank_matching import match_quantiles, straight_through
from model.strategy import DEFAULT, Strategy


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossConfig:
    """The data term. ``kind="mse"``: the official MSE. ``kind="weighted"``: the mean of
    w·(error² + |error|) where w is ``weights[k]`` for targets at or above ``thresholds[k]``
    (the highest one reached) and 1 below the first.

    Added to it, each when its weight is above 0 (`model.objectives`):
    ``fourier_amplitude_weight`` · the Fourier amplitude term, ``fourier_correlation_weight`` ·
    the Fourier correlation term, and ``intensity_l1_weight`` · the intensity-weighted L1, whose
    pixel weight is ``intensity_weights`` at the targets ``intensity_knots`` (model units,
    increasing), linear between them."""

    kind: str = "mse"
    thresholds: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()
    fourier_amplitude_weight: float = 0.0
    fourier_correlation_weight: float = 0.0
    intensity_l1_weight: float = 0.0
    intensity_knots: tuple[float, ...] = ()
    intensity_weights: tuple[float, ...] = ()

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
        for name in (
            "fourier_amplitude_weight",
            "fourier_correlation_weight",
            "intensity_l1_weight",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < float("inf")):
                raise ValueError(f"LossConfig.{name}={value!r}: must be a finite number >= 0")
        knots, weights = self.intensity_knots, self.intensity_weights
        if self.intensity_l1_weight and not knots:
            raise ValueError("LossConfig: intensity_l1_weight > 0 needs intensity_knots")
        if len(knots) != len(weights):
            raise ValueError(
                f"LossConfig: {len(knots)} intensity_knots but {len(weights)} intensity_weights"
            )
        if any(b <= a for a, b in zip(knots, knots[1:], strict=False)):
            raise ValueError(f"LossConfig.intensity_knots={knots!r}: must strictly increase")

    @property
    def departures(self) -> bool:
        """Whether any term beside the data term is on."""
        return bool(
            self.fourier_amplitude_weight
            or self.fourier_correlation_weight
            or self.intensity_l1_weight
        )


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
    *,
    strategy: Strategy = DEFAULT,
) -> tuple[Float[Array, ""], LossParts]:
    """Loss of one batch of patched clips, as the official `RNN.forward` computes it, the
    forward traced under `strategy`.

    `valid` (1 = observed) optionally masks unobserved target pixels out of the MSE;
    without it every element counts equally, as in the official code. `mse` in the parts
    is always the plain (masked) MSE; the returned loss uses `loss`'s data term.
    """
    cfg = network.cfg
    next_frames, decouple = network(frames, mask, with_decouple=cfg.is_v2, strategy=strategy)
    target = frames[:, 1:, ..., : next_frames.shape[-1]]
    w = None if valid is None else jnp.broadcast_to(valid[:, 1:], next_frames.shape)
    return _objective(network, next_frames, target, w, decouple, loss, cfg.patch_size)


def lagrangian_loss(
    network: PredRNN,
    clips: Float[Array, "batch time height width channels"],
    mask: Float[Array, "batch steps #hp #wp #cp"],
    valid: Float[Array, "batch time height width #channels"] | None,
    loss: LossConfig,
    motion: Float[Array, "batch height width 2"],
    *,
    strategy: Strategy = DEFAULT,
) -> tuple[Float[Array, ""], LossParts]:
    """`predrnn_loss` of a Lagrangian network (`model.lagrangian`) on image-space clips.

    The network runs on the clip advected to the newest context frame's time; its forecasts
    are advected forward to their valid times and scored there, against the clip as observed.
    A target pixel whose forecast has no data (advected in from outside) does not count.
    With `match_extrapolation` the leads are scored rank-matched, as the rollout gives them.
    `next_frames` in the parts are the advected forecasts (image space).

    Clips (and their valid mask and motion) wider than the network's grid carry a halo, the
    same on every side (`model.rollout.rollout`'s `margin`): the network runs on the grid
    inside it, each forecast is placed in the frame it was fed (the newest for the leads:
    extrapolation in the margin) and advected on the padded grid, and the loss is the grid's.
    """
    cfg = network.cfg
    p, reference = cfg.patch_size, cfg.input_length - 1
    m = _halo(cfg.img_height, cfg.img_width, clips.shape)
    moved, _ = to_lagrangian(clips, motion, reference)
    patched = reshape_patch(crop(moved, m), p)
    next_frames, decouple = network(patched, mask, with_decouple=cfg.is_v2, strategy=strategy)
    frames = reshape_patch_back(next_frames, p)
    # the frame each output was fed (with predict_delta: what a zero correction forecasts)
    fed = moved[:, [min(n, reference) for n in range(clips.shape[1] - 1)]]
    frames = embed(frames, fed[..., : frames.shape[-1]], m)
    forecast, inside = to_eulerian(frames, motion, 1 - reference)
    forecast, inside = crop(forecast, m), crop(inside, m)
    if cfg.match_extrapolation:
        newest = moved[:, reference]
        forecast = _matched_leads(forecast, inside, newest, motion, reference, m)
    target = crop(clips[:, 1:, ..., : forecast.shape[-1]], m)
    w = jnp.broadcast_to(inside, forecast.shape)
    if valid is not None:
        w = w * jnp.broadcast_to(crop(valid[:, 1:], m), forecast.shape)
    return _objective(network, forecast, target, w, decouple, loss, 1)


def _halo(height: int, width: int, shape: tuple[int, ...]) -> int:
    """The margin of (batch, time, H + 2m, W + 2m, C) clips around the (height, width) grid."""
    extra_h, extra_w = shape[2] - height, shape[3] - width
    if extra_h != extra_w or extra_h < 0 or extra_h % 2:
        raise ValueError(
            f"lagrangian_loss: expected clips of the grid {height}x{width} or with an equal "
            f"margin on every side, got {shape[2]}x{shape[3]}"
        )
    return extra_h // 2


def _matched_leads(
    forecast: Float[Array, "batch frames grid_height grid_width channels"],
    inside: Float[Array, "batch frames grid_height grid_width 1"],
    newest: Float[Array, "batch height width cin"],
    motion: Float[Array, "batch height width 2"],
    first_lead: int,
    margin: int = 0,
) -> Float[Array, "batch frames grid_height grid_width channels"]:
    """The forecasts from `first_lead` on, each with the values of the newest frame advected
    to its time (`model.rollout`'s matching, on the padded grid with a `margin`), the gradient
    passed straight through."""
    leads = forecast[:, first_lead:]
    channels = forecast.shape[-1]
    reference = crop(extrapolation(newest[..., :channels], motion, leads.shape[1]), margin)
    matched = match_quantiles(with_no_data(leads, inside[:, first_lead:]), reference)
    return jnp.concatenate([forecast[:, :first_lead], straight_through(leads, matched)], axis=1)


def _objective(
    network: PredRNN,
    forecast: Array,
    target: Array,
    w: Array | None,
    decouple: Float[Array, ""],
    loss: LossConfig,
    patch: int,
) -> tuple[Float[Array, ""], LossParts]:
    """The data term over the pixels weighted by `w` (all of them if None), the departures
    that `loss` turns on, plus decoupling. `patch`: the patch size of the fields given."""
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
    if loss.departures:
        data = data + _departures(forecast, target, w, norm, loss, patch)
    total = data + cfg.decouple_beta * decouple if cfg.is_v2 else data
    return total, LossParts(mse, decouple, forecast)


def _departures(
    forecast: Array, target: Array, w: Array | None, norm: Array | float, loss: LossConfig, p: int
) -> Float[Array, ""]:
    """The weighted sum of the terms of `model.objectives` that `loss` turns on, on image-space
    fields (patched ones are put back first: the spectra need the image's neighbours)."""
    forecast, target = reshape_patch_back(forecast, p), reshape_patch_back(target, p)
    w = None if w is None else reshape_patch_back(w, p)
    total = jnp.zeros((), forecast.dtype)
    if loss.fourier_amplitude_weight:
        amplitude = fourier_amplitude(forecast, target, w, norm)
        total = total + loss.fourier_amplitude_weight * amplitude
    if loss.fourier_correlation_weight:
        correlation = fourier_correlation(forecast, target, w)
        total = total + loss.fourier_correlation_weight * correlation
    if loss.intensity_l1_weight:
        knots, weights = loss.intensity_knots, loss.intensity_weights
        l1 = intensity_l1(forecast, target, w, norm, knots, weights)
        total = total + loss.intensity_l1_weight * l1
    return total
