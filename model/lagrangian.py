"""The Lagrangian frame: frames advected to, and forecasts advected from, a reference time.

A network with `ModelConfig.lagrangian` sees its context in the frame of reference that moves
with the rain. Frame t of a clip is advected by `reference - t` steps along the clip's motion
field, so every frame shows the rain where it is at the reference time (the newest context
frame); the network then only has to forecast growth, decay and what the motion misses. Its
forecast of frame t is advected by `t - reference` steps back to where the rain will be.

Pixels whose trajectory starts outside the grid have no data: the network sees them as 0 (as
it sees no data everywhere else), the loss leaves them out, and forecasts hold NaN there.

A halo (`margin` pixels of the radar's scan on every side of the model grid) moves that edge
outwards: the motion and both advections run on the padded grid, the network on the model grid
inside it (`crop`, `embed`), so rain the radar saw in the margin is advected into the forecast.
"""

import jax.numpy as jnp
from jaxtyping import Array, Float

from model.advection import shift_in_time


def to_lagrangian(
    frames: Float[Array, "batch time height width channels"],
    motion: Float[Array, "batch height width 2"],
    reference: int,
) -> tuple[
    Float[Array, "batch time height width channels"], Float[Array, "batch time height width 1"]
]:
    """Frame t advected to time `reference` (no data as 0), and where it has data."""
    offsets = tuple(reference - t for t in range(frames.shape[1]))
    values, inside = shift_in_time(frames, motion, offsets)
    return values * inside, inside


def to_eulerian(
    frames: Float[Array, "batch time height width channels"],
    motion: Float[Array, "batch height width 2"],
    first: int,
) -> tuple[
    Float[Array, "batch time height width channels"], Float[Array, "batch time height width 1"]
]:
    """Frame n, valid `first + n` steps after the reference time, advected there from the
    Lagrangian frame; and where it has data (its values elsewhere are meaningless)."""
    offsets = tuple(first + n for n in range(frames.shape[1]))
    return shift_in_time(frames, motion, offsets)


def extrapolation(
    newest: Float[Array, "batch height width channels"],
    motion: Float[Array, "batch height width 2"],
    leads: int,
) -> Float[Array, "batch leads height width channels"]:
    """The newest frame advected 1..`leads` steps ahead (pysteps' extrapolation), NaN where
    its trajectory starts outside the grid: the reference of `match_extrapolation`."""
    frames = jnp.broadcast_to(newest[:, None], (newest.shape[0], leads, *newest.shape[1:]))
    return with_no_data(*to_eulerian(frames, motion, 1))


def crop(
    frames: Float[Array, "*lead height width channels"], margin: int
) -> Float[Array, "*lead grid_height grid_width channels"]:
    """The model grid inside a padded grid: `margin` pixels off every side (0: as it is)."""
    if margin == 0:
        return frames
    return frames[..., margin:-margin, margin:-margin, :]


def embed(
    inner: Float[Array, "batch leads grid_height grid_width channels"],
    around: Float[Array, "batch *lead height width channels"],
    margin: int,
) -> Float[Array, "batch leads height width channels"]:
    """Every lead of `inner` (the model grid) placed inside `around` (a padded frame, `margin`
    pixels wider on every side, or one per lead), which fills the margin."""
    if margin == 0:
        return inner
    if around.ndim == inner.ndim - 1:
        shape = (inner.shape[0], inner.shape[1], *around.shape[1:])
        around = jnp.broadcast_to(around[:, None], shape)
    return around.at[:, :, margin:-margin, margin:-margin, :].set(inner)


def with_no_data(
    values: Float[Array, "*shape"], inside: Float[Array, "*shape"]
) -> Float[Array, "*shape"]:
    """NaN where `inside` is 0."""
    return jnp.where(inside > 0, values, jnp.nan)
