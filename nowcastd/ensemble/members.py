"""The ensemble's members in JAX: what runs inside the one compiled program, after the host has
estimated the scan's perturbation parameters (`nowcastd.ensemble.perturbations`).

Axes: `n` windows, `N` members, `K` leads, `H` x `W` pixels. Fields are in model units (the
dBZ-like [0, 1] scale of `DataTransform`, a logarithmic rain scale) until the last step, which
turns them into mm/h with `DataTransform.to_rates`, the rule of every forecast.

1. The network forecasts once (design "perturb") on the window in its own frame of reference:
   the Lagrangian frame for a Lagrangian network (`model.lagrangian`). Design "network" runs
   it for every member (a batch of n N windows) on a context whose newest frame carries that
   member's first noise field.
2. Noise with the scan's spatial spectrum, growing with the lead scale by scale as STEPS'
   does (`nowcastd.ensemble.noise`: an AR(1) per wavenumber band with the band's lag-1
   correlation in the two newest context frames), times `gain * std(newest)`, added to the
   forecast in model units.
3. Each member moves with its own motion (`nowcastd.ensemble.paths`): the velocity at step t
   is the motion plus pysteps' BPS perturbation (coefficients along and across the local
   motion, from the host), integrated step by step for the model grid's pixels. An Eulerian
   network's forecast has moved already: its members move by the perturbation alone.
4. Rank matching as the checkpoint says (`match_extrapolation`: every member against the
   newest frame advected along the unperturbed motion, the deterministic forecast's reference;
   `match_intensity`: against the newest frame), by `nowcastd.ensemble.matching`.

No Python loop over members or leads: members and windows are batch axes, the trajectories a
`lax.scan` over the leads.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, UInt

from model.lagrangian import to_lagrangian
from model.network import PredRNN
from model.rollout import encode, forecast_from
from model.strategy import DEFAULT, Strategy
from nowcastd.ensemble.matching import match_members
from nowcastd.ensemble.noise import lead_noise
from nowcastd.ensemble.paths import member_paths, sample_along
from nowcastd.io.transform import DataTransform

__all__ = ["ensemble_rates"]


def _network_forecast(
    network: PredRNN, context: Float[Array, "b i h w 1"], num_leads: int, strategy: Strategy
) -> Float[Array, "b k h w"]:
    """The network's K frames from `context` (already in its frame of reference)."""
    if context.shape[1] > 1:
        carry, _ = encode(network, context[:, :-1], strategy=strategy)
    else:
        p = network.cfg.patch_size
        carry = network.zero_carry(context.shape[0], (context.shape[2] // p, context.shape[3] // p))
    out = forecast_from(network, carry, context[:, -1], num_leads, strategy=strategy)
    return out[..., 0]


def _matched(
    network: PredRNN,
    members: Float[Array, "n m k hi wi"],
    newest: Float[Array, "n h w"],
    still: Float[Array, "n k hi wi 2"],
    margin: int,
) -> Float[Array, "n m k hi wi"]:
    """The members rank matched as the checkpoint's deterministic forecast is
    (`nowcastd.ensemble.matching`): against the padded newest frame advected along the
    unperturbed motion (`match_extrapolation`), or the newest frame (`match_intensity`)."""
    cfg = network.cfg
    n, _, k = members.shape[:3]
    if cfg.lagrangian and cfg.match_extrapolation:
        shape = (n, k, *newest.shape[1:])
        reference = sample_along(jnp.broadcast_to(newest[:, None], shape), still, margin)
        return match_members(members, reference)
    if cfg.match_intensity:
        reference = _inner(newest, margin)[:, None]
        return match_members(members, jnp.broadcast_to(reference, (n, k, *reference.shape[2:])))
    return members


def _inner(fields: Float[Array, "*lead h w"], margin: int) -> Float[Array, "*lead hi wi"]:
    """The model grid of padded fields: `margin` pixels off every side."""
    if margin == 0:
        return fields
    return fields[..., margin:-margin, margin:-margin]


def _embed(
    inner: Float[Array, "n m k hi wi"], around: Float[Array, "n h w"], margin: int
) -> Float[Array, "n m k h w"]:
    """`inner` placed inside the padded frame `around`, which fills the margin (a halo)."""
    if margin == 0:
        return inner
    padded = jnp.broadcast_to(around[:, None, None], (*inner.shape[:3], *around.shape[1:]))
    return padded.at[..., margin:-margin, margin:-margin].set(inner)


def _forecasts(
    network: PredRNN,
    moved: Float[Array, "n i h w 1"],
    first: Float[Array, "n m h w"],
    leads: int,
    design: str,
    margin: int,
    strategy: Strategy,
) -> Float[Array, "n m k h w"]:
    """The network's forecast on the model grid inside the halo, placed in the newest padded
    frame: once ("perturb", member axis 1) or per member from its perturbed newest frame
    `first` ("network")."""
    n, members = first.shape[:2]
    inner = moved[..., margin : moved.shape[2] - margin, margin : moved.shape[3] - margin, :]
    if design == "network":
        batch = jnp.broadcast_to(inner[:, None], (n, members, *inner.shape[1:]))
        batch = batch.at[:, :, -1, ..., 0].set(_inner(first, margin))
        out = _network_forecast(
            network, batch.reshape(n * members, *inner.shape[1:]), leads, strategy
        )
        forecast = out.reshape(n, members, *out.shape[1:])
    else:
        forecast = _network_forecast(network, inner, leads, strategy)[:, None]
    return _embed(forecast, moved[:, -1, ..., 0], margin)


def ensemble_rates(
    network: PredRNN,
    transform: DataTransform,
    context: Float[Array, "n i h w 1"],
    motion: Float[Array, "n h w 2"],
    spectrum: Float[Array, "n h wr"],
    coefficients: Float[Array, "n m k 2"],
    key_data: UInt[Array, "2"],
    *,
    design: str = "perturb",
    gain: float = 1.0,
    margin: int = 0,
    strategy: Strategy = DEFAULT,
) -> Float[Array, "n m k hi wi"]:
    """The members' forecasts in mm/h (see the module docstring), NaN where a member's rain
    would come from off the grid. `coefficients`: BPS velocity perturbations in pixels per
    step along and across the motion; `key_data`: a raw threefry key. `margin`: the halo of a
    Lagrangian network's context, motion and spectrum (`model.lagrangian`), cropped from the
    members (others take none)."""
    n, members, leads = coefficients.shape[:3]
    lagrangian = network.cfg.lagrangian
    margin = margin if lagrangian else 0
    moved = to_lagrangian(context, motion, context.shape[1] - 1)[0] if lagrangian else context
    newest = moved[:, -1, ..., 0]
    previous = moved[:, -2, ..., 0] if moved.shape[1] > 1 else newest
    key = jax.random.wrap_key_data(key_data, impl="threefry2x32")
    eps = lead_noise(key, spectrum, previous, newest, members, leads)
    scale = gain * newest.std(axis=(1, 2))[:, None, None, None, None]
    first = jnp.clip(newest[:, None] + scale[:, :, 0] * eps[:, :, 0], 0.0, 1.0)
    forecast = _forecasts(network, moved, first, leads, design, margin, strategy)
    paths = jax.vmap(member_paths, in_axes=(0, 0, None, None))
    displacement, still = paths(motion, coefficients, lagrangian, margin)
    advected = sample_along(forecast + scale * eps, displacement, margin)
    observed = context[:, -1, ..., 0]
    matched = _matched(network, advected, observed, still, margin)
    return transform.to_rates(matched)
