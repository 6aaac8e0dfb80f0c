"""Where each member's rain comes from: trajectories under perturbed motion, and the fields
sampled along them, for the pixels of the model grid only.

A motion field is (H, W, 2) pixels per step, x (columns) then y (rows), on the padded grid (the
model grid plus a halo of `margin` pixels on every side, as `model.lagrangian` pads it; 0: no
halo). A member's velocity at step t is the motion (when `moving`) plus its BPS perturbation,
`coefficients[t]` pixels per step along and across the local motion (pysteps' BPS perturbs the
two directions). The trajectory of each model-grid pixel is integrated backwards step by step
as `model.advection` integrates a constant motion (one midpoint per step, bilinear velocities,
edge values continued outwards), and every lead samples the padded field it advects once.
Only the model grid's pixels are followed: the halo is where rain comes from, not where it is
forecast, so the work is that of the model grid (a quarter of the padded one at the demo's
halo).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates
from jaxtyping import Array, Float

__all__ = ["member_paths", "sample_along"]


def _sample(image: Float[Array, "h w"], rows: Array, cols: Array) -> Array:
    """Bilinear values of `image` at (rows, cols), the edge values continued outwards."""
    values: Array = map_coordinates(image, [rows, cols], order=1, mode="nearest")
    return values


def _starts(shape: tuple[int, ...], margin: int) -> tuple[Array, Array]:
    """The model grid's pixel rows and columns on a padded grid of `shape`."""
    h, w = shape[0] - 2 * margin, shape[1] - 2 * margin
    rows, cols = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32) + margin,
        jnp.arange(w, dtype=jnp.float32) + margin,
        indexing="ij",
    )
    return rows, cols


def _directions(motion: Float[Array, "h w 2"]) -> tuple[Array, Array]:
    """The local motion's direction and the one across it (0 where there is no motion)."""
    speed = jnp.linalg.norm(motion, axis=-1, keepdims=True)
    along = jnp.where(speed > 1e-12, motion / jnp.maximum(speed, 1e-12), 0.0)
    across = jnp.stack([-along[..., 1], along[..., 0]], axis=-1)
    return along, across


def member_paths(
    motion: Float[Array, "h w 2"], coefficients: Float[Array, "m k 2"], moving: bool, margin: int
) -> tuple[Float[Array, "m k hi wi 2"], Float[Array, "k hi wi 2"]]:
    """The members' displacements (x, y) of each model-grid pixel after 1..K steps, and the
    unperturbed one (zero unless `moving`). The unperturbed trajectory is integrated as
    `model.advection` integrates it; a member's departs from it by its perturbation velocity
    taken along that trajectory (the local directions where it was a step before), summed
    over the steps: first order in the perturbation, so the members cost one integration, not
    one each."""
    rows, cols = _starts(motion.shape[:2], margin)
    along, across = _directions(motion)
    base = motion if moving else jnp.zeros_like(motion)

    def at(field: Array, d: Array) -> Array:
        r, c = rows + d[..., 1], cols + d[..., 0]
        return jnp.stack([_sample(field[..., 0], r, c), _sample(field[..., 1], r, c)], axis=-1)

    def body(state: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], Array]:
        d, v_inc = state
        directions = jnp.stack([at(along, d), at(across, d)])  # where this step starts
        v_inc = at(base, d - v_inc / 2.0)  # the midpoint of this step's trajectory
        d = d - v_inc
        return (d, at(base, d)), jnp.concatenate([d[None], directions])

    zero = jnp.zeros((*rows.shape, 2), motion.dtype)
    leads = coefficients.shape[1]
    _, out = jax.lax.scan(body, (zero, at(base, zero)), None, length=leads)
    still, steps = out[:, 0], out[:, 1:]  # (K, hi, wi, 2), (K, 2, hi, wi, 2)
    perturbation = jnp.einsum("mkc,kcyxd->mkyxd", coefficients, steps)
    return still[None] - jnp.cumsum(perturbation, axis=1), still


def sample_along(
    fields: Float[Array, "*lead h w"], displacement: Float[Array, "*lead hi wi 2"], margin: int
) -> Float[Array, "*lead hi wi"]:
    """Each padded field sampled at its model-grid pixels plus their displacement, NaN where
    that point lies off the padded grid (rain from beyond the halo is unknown)."""
    h, w = fields.shape[-2:]
    rows, cols = _starts((h, w), margin)
    r, c = rows + displacement[..., 1], cols + displacement[..., 0]
    inside = (r >= 0) & (r <= h - 1) & (c >= 0) & (c <= w - 1)
    flat = fields.reshape(-1, h, w)
    values = jax.vmap(_sample)(flat, r.reshape(-1, *r.shape[-2:]), c.reshape(-1, *c.shape[-2:]))
    return jnp.where(inside, values.reshape(inside.shape), jnp.nan)
