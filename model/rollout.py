"""Inference: autoregressive rollouts, and encoding split from forecasting.

A forecast from context frames f_1..f_I re-encodes them from zero state. The
daemon can encode f_2..f_I while it waits for f_{I+1} (`encode`), so that only
the step consuming the new frame and the K-1 feedback steps remain on the
critical path (`forecast_from`). `rollout` is the whole thing in one call.

Each takes the trace-time part of a `Strategy` as its `strategy` keyword; compile them with
`model.compile.compile_program` (`rollout_jit`), which applies its XLA options too. Inference
unrolls its time loops unless the strategy says otherwise (`Strategy.unrolls`): the unrolled
program reuses its buffers, and XLA fuses across steps (the radar rollout ran about 5 % faster;
it compiles in 1.5 s instead of 0.6 s).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from model.compile import compile_program
from model.lagrangian import (
    crop,
    embed,
    extrapolation,
    to_eulerian,
    to_lagrangian,
    with_no_data,
)
from model.network import Carry, PredRNN
from model.patch import reshape_patch, reshape_patch_back
from model.rank_matching import match_quantiles
from model.strategy import DEFAULT, Strategy


def _unrolled(network: PredRNN, strategy: Strategy, batch: int, hw: tuple[int, int]) -> bool:
    """Whether an inference time loop is unrolled (`Strategy.unrolls`)."""
    return strategy.unrolls(network.cfg, batch, hw, network.cfg.total_length - 1, inference=True)


def _split_actions(
    network: PredRNN, frames: Float[Array, "*lead hp wp cpin"]
) -> tuple[Float[Array, "*lead hp wp cp"], Float[Array, "*lead hp wp ap"] | None]:
    cp = network.cfg.patch_channels
    if network.cfg.is_action:
        return frames[..., :cp], frames[..., cp:]
    return frames, None


def encode(
    network: PredRNN,
    frames: Float[Array, "batch time height width cin"],
    *,
    strategy: Strategy = DEFAULT,
) -> tuple[Carry, Float[Array, "batch hp wp cp"]]:
    """Run the network over `time` observed frames from zero state (teacher forced), traced
    under `strategy`.

    Returns the carry after the last frame and the prediction of the frame after it.
    Image-space frames in (action maps appended after the image channels).
    """
    patched = reshape_patch(frames, network.cfg.patch_size)
    images, actions = _split_actions(network, patched)
    fused = network.fused_weights()

    def body(carry: Carry, xs: tuple[Array, Array | None]) -> tuple[Carry, Array]:
        frame, act = xs
        carry, out = network.step(
            carry, frame, act, fused=fused, with_decouple=False, strategy=strategy
        )
        return carry, out.frame

    xs = (jnp.moveaxis(images, 1, 0), None if actions is None else jnp.moveaxis(actions, 1, 0))
    hw = (images.shape[2], images.shape[3])
    init = network.zero_carry(images.shape[0], hw)
    unroll = _unrolled(network, strategy, images.shape[0], hw)
    carry, outs = jax.lax.scan(body, init, xs, unroll=unroll)
    return carry, outs[-1]


def forecast_from(
    network: PredRNN,
    carry: Carry,
    frame: Float[Array, "batch height width cin"],
    num_leads: int,
    future_actions: Float[Array, "batch feedback height width actions"] | None = None,
    *,
    strategy: Strategy = DEFAULT,
) -> Float[Array, "batch leads height width channels"]:
    """Consume one new frame, then feed predictions back: `num_leads` future frames, traced
    under `strategy`."""
    cfg = network.cfg
    p = cfg.patch_size
    fused = network.fused_weights()
    x, act = _split_actions(network, reshape_patch(frame, p))
    carry, out = network.step(carry, x, act, fused=fused, with_decouple=False, strategy=strategy)

    def body(state: tuple[Carry, Array], act_t: Array | None) -> tuple[tuple[Carry, Array], Array]:
        carry, prev = state
        carry, out = network.step(
            carry, prev, act_t, fused=fused, with_decouple=False, strategy=strategy
        )
        return (carry, out.frame), out.frame

    acts = None
    if cfg.is_action:
        if future_actions is None:
            raise ValueError("action models need future_actions for the feedback steps")
        acts = jnp.moveaxis(reshape_patch(future_actions, p), 1, 0)
    if num_leads > 1:
        unroll = _unrolled(network, strategy, x.shape[0], (x.shape[1], x.shape[2]))
        _, rest = jax.lax.scan(body, (carry, out.frame), acts, length=num_leads - 1, unroll=unroll)
        frames = jnp.concatenate([out.frame[None], rest], axis=0)
    else:
        frames = out.frame[None]
    forecast = reshape_patch_back(jnp.moveaxis(frames, 0, 1), p)
    if cfg.match_intensity and not cfg.lagrangian:  # a Lagrangian one matches once advected
        forecast = match_distribution(forecast, frame[..., : cfg.img_channel])
    return forecast


def match_distribution(
    forecast: Float[Array, "batch leads height width channels"],
    reference: Float[Array, "batch height width channels"],
) -> Float[Array, "batch leads height width channels"]:
    """Give every forecast frame the value distribution of `reference` (probability matching,
    `model.rank_matching`): the pixel of rank r in a frame takes the reference's r-th smallest
    value. The forecast keeps where rain is; the newest observation decides how much and how
    strong.

    NaN (no data) stays NaN; the n pixels with data take the reference's quantiles at
    (r + 1/2) / n, which with no NaN is the reference's own r-th value."""
    return match_quantiles(forecast, reference[:, None])


def rollout(
    network: PredRNN,
    context: Float[Array | np.ndarray, "batch time height width cin"],
    num_leads: int,
    future_actions: Float[Array | np.ndarray, "batch feedback height width actions"] | None = None,
    motion: Float[Array | np.ndarray, "batch height width 2"] | None = None,
    *,
    strategy: Strategy = DEFAULT,
    margin: int = 0,
) -> Float[Array, "batch leads grid_height grid_width channels"]:
    """Forecast `num_leads` frames from the I most recent frames (any K >= 1), traced under
    `strategy`.

    Takes NumPy or JAX arrays, so it can be called eagerly on frames as they are read.
    A Lagrangian network needs the context's `motion` (pixels per step, x then y) and
    forecasts NaN where rain would come from outside the grid; with `match_extrapolation`
    each lead takes the value distribution of the newest frame advected to its time.

    `margin` > 0: the context and motion cover a halo of `margin` pixels on every side of the
    model grid, and the forecast is the model grid (`model.lagrangian`): a Lagrangian network
    takes the motion and the advection from the halo, any other ignores it.
    """
    context = jnp.asarray(context)
    cfg = network.cfg
    if cfg.lagrangian != (motion is not None):
        raise ValueError("a Lagrangian network forecasts with a motion field, others without")
    if motion is not None:
        return _lagrangian_rollout(
            network, context, num_leads, jnp.asarray(motion), strategy, margin
        )
    actions = None if future_actions is None else jnp.asarray(future_actions)
    return _rollout(network, crop(context, margin), num_leads, actions, strategy)


def _lagrangian_rollout(
    network: PredRNN,
    context: Float[Array, "batch time height width cin"],
    num_leads: int,
    motion: Float[Array, "batch height width 2"],
    strategy: Strategy,
    margin: int,
) -> Float[Array, "batch leads grid_height grid_width channels"]:
    """`rollout` of a Lagrangian network: the context advected to the newest frame's time on
    the (padded) grid, the network on the model grid inside it, and its forecast, placed in
    the newest frame (which holds the margin: extrapolation there), advected to each lead."""
    cfg = network.cfg
    newest = context[:, -1, ..., : cfg.img_channel]
    moved, _ = to_lagrangian(context, motion, context.shape[1] - 1)
    lagrangian = _rollout(network, crop(moved, margin), num_leads, None, strategy)
    forecast, inside = to_eulerian(embed(lagrangian, newest, margin), motion, 1)
    forecast = with_no_data(crop(forecast, margin), crop(inside, margin))
    if cfg.match_extrapolation:
        reference = crop(extrapolation(newest, motion, num_leads), margin)
        return match_quantiles(forecast, reference)
    return match_distribution(forecast, crop(newest, margin)) if cfg.match_intensity else forecast


def _rollout(
    network: PredRNN,
    context: Float[Array, "batch time height width cin"],
    num_leads: int,
    future_actions: Float[Array, "batch feedback height width actions"] | None,
    strategy: Strategy,
) -> Float[Array, "batch leads height width channels"]:
    if context.shape[1] > 1:
        carry, _ = encode(network, context[:, :-1], strategy=strategy)
    else:
        p = network.cfg.patch_size
        hw = (context.shape[2] // p, context.shape[3] // p)
        carry = network.zero_carry(context.shape[0], hw)
    return forecast_from(
        network, carry, context[:, -1], num_leads, future_actions, strategy=strategy
    )


# XLA options for every inference program under the default strategy (the rollout here, and the
# daemon's compiled encode/forecast functions). On one CPU, XLA's default routed the gate
# convolutions through YNN fusions; without them the radar rollout ran in 0.75 s instead of
# 0.95 s (its 192- and 64-output convolutions 1.4x and 1.3x faster), the same values to 4e-8.
# The training step ran slower without them (seed configuration 0.13 s instead of 0.10 s), so
# it keeps XLA's default. Other CPUs may differ: `model.strategy`, measured by `nowcastd`.
INFERENCE_COMPILER_OPTIONS = DEFAULT.compiler_options(inference=True)


def rollout_jit(
    network: PredRNN, *args: Any, strategy: Strategy = DEFAULT, margin: int = 0
) -> Float[Array, "batch leads grid_height grid_width channels"]:
    """`rollout(network, *args, margin=margin)` compiled under `strategy` (`model.compile`),
    once per strategy, shapes and margin."""
    program = compile_program(rollout, strategy, inference=True)
    out: Array = program(network, *args, margin=margin) if margin else program(network, *args)
    return out
