"""Semi-Lagrangian advection of fields along a motion field, in JAX.

The scheme is pysteps' `extrapolation.semilagrangian.extrapolate` with its defaults (backward
trajectories, one midpoint iteration per step, bilinear interpolation): the field k steps
ahead at a pixel is the field now at the point the trajectory through that pixel came from.
The displacement of each step is integrated from the previous one, so every lead interpolates
the original field once and advection does not blur with the lead time.

A motion field is `(batch, height, width, 2)` in pixels per time step, x (columns) first, then
y (rows), as pysteps orders its `(2, height, width)` fields. A point whose trajectory starts
outside the grid has no data (`inside` is 0 there): rain advected in from outside is unknown,
as in pysteps, which fills it with NaN.

Everything is differentiable with respect to the advected values (the training step takes its
gradient through the advection of the forecasts); motion fields are inputs, not parameters.
"""

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates
from jaxtyping import Array, Float


def _interpolate(
    image: Float[Array, "height width"], rows: Array, cols: Array
) -> Float[Array, "height width"]:
    """Bilinear interpolation with the edge values continued outwards (scipy's "nearest")."""
    values: Array = map_coordinates(image, [rows, cols], order=1, mode="nearest")
    return values


def _grid(height: int, width: int) -> tuple[Array, Array]:
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
    )
    return rows, cols


def _displacements_one(
    motion: Float[Array, "height width 2"], steps: int
) -> Float[Array, "steps height width 2"]:
    """pysteps' trajectory integration for one motion field: the displacement after 1..steps."""
    rows, cols = _grid(motion.shape[0], motion.shape[1])
    vx, vy = motion[..., 0], motion[..., 1]

    def velocity_at(d: Array) -> Array:
        r, c = rows + d[..., 1], cols + d[..., 0]
        return jnp.stack([_interpolate(vx, r, c), _interpolate(vy, r, c)], axis=-1)

    def body(state: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], Array]:
        d, v_inc = state
        v_inc = velocity_at(d - v_inc / 2.0)  # the midpoint of this step's trajectory
        d = d - v_inc
        return (d, velocity_at(d)), d

    init = (jnp.zeros_like(motion), motion)
    _, out = jax.lax.scan(body, init, None, length=steps)
    return out


def displacements(
    motion: Float[Array, "batch height width 2"], steps: int
) -> Float[Array, "steps batch height width 2"]:
    """Where the value at each pixel comes from, 1..`steps` time steps ahead (x, y pixels)."""
    return jax.vmap(_displacements_one, in_axes=(0, None), out_axes=1)(motion, steps)


def warp(
    field: Float[Array, "batch height width channels"],
    displacement: Float[Array, "batch height width 2"],
) -> tuple[Float[Array, "batch height width channels"], Float[Array, "batch height width 1"]]:
    """The field sampled at each pixel plus its displacement, and 1 where that point lies on
    the grid (0 where it lies outside, whose value is then the nearest edge's)."""
    h, w = field.shape[1], field.shape[2]
    rows, cols = _grid(h, w)
    r = rows + displacement[..., 1]
    c = cols + displacement[..., 0]
    inside = (r >= 0) & (r <= h - 1) & (c >= 0) & (c <= w - 1)

    def one(image: Array, r: Array, c: Array) -> Array:
        return jax.vmap(_interpolate, in_axes=(-1, None, None), out_axes=-1)(image, r, c)

    values = jax.vmap(one)(field, r, c)
    return values, inside[..., None].astype(field.dtype)


def shift_in_time(
    fields: Float[Array, "batch time height width channels"],
    motion: Float[Array, "batch height width 2"],
    offsets: tuple[int, ...],
) -> tuple[
    Float[Array, "batch time height width channels"], Float[Array, "batch time height width 1"]
]:
    """Advect frame n of `fields` by `offsets[n]` time steps along `motion` (back along it
    for a negative offset; 0 leaves the frame as it is), and where each result has data."""
    if len(offsets) != fields.shape[1]:
        raise ValueError(f"shift_in_time: {fields.shape[1]} frames but {len(offsets)} offsets")
    ahead, back = max(max(offsets), 0), max(-min(offsets), 0)
    zero = jnp.zeros((1, *motion.shape), motion.dtype)
    parts = [displacements(-motion, back)[::-1]] if back else []
    parts += [zero] + ([displacements(motion, ahead)] if ahead else [])
    table = jnp.concatenate(parts)  # offsets -back..ahead
    shifts = table[jnp.asarray(offsets) + back]  # (time, batch, height, width, 2)
    values, inside = jax.vmap(warp, in_axes=(1, 0), out_axes=1)(fields, shifts)
    return values, inside
