"""Rank (probability) matching: a field takes another's value distribution, keeping its own ranks.

This is the `cdf` matching that pysteps' S-PROG and STEPS apply to each lead: the pixel of rank
r among a frame's n pixels with data takes the reference's quantile at (r + 1/2) / n, read from
the reference's m sorted values with data as its value of rank floor((r + 1/2) · m / n). With
as many pixels with data on both sides (m = n) that is the reference's own r-th value, so the
matched frame holds exactly the reference's values, in the forecast's rank order.

Sort-based, per leading index (one sample's one lead), with static shapes: no data is NaN on
both sides and is sorted last; a forecast pixel with no data stays NaN, and a frame whose
reference has no data at all is left as it is. Ties keep the order of the flattened pixels.
Sorting has no useful gradient (ranks are piecewise constant): `straight_through` scores the
matched values and passes the gradient to the unmatched ones.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


def match_quantiles(
    values: Float[Array, "*lead height width channels"],
    reference: Float[Array, "*#lead height width channels"],
) -> Float[Array, "*lead height width channels"]:
    """Each frame of `values` with the value distribution of the same frame of `reference`
    (which may be broadcast along the leading axes: it is sorted before it is broadcast)."""
    lead = values.shape[:-3]
    flat = values.reshape(-1, values.shape[-3] * values.shape[-2] * values.shape[-1])
    ref = reference.reshape(*reference.shape[:-3], -1)
    finite = jnp.isfinite(flat)
    ordered = jnp.broadcast_to(_sorted(ref), (*lead, ref.shape[-1])).reshape(flat.shape)
    m = jnp.sum(jnp.isfinite(ordered), axis=-1, keepdims=True)
    n = jnp.maximum(jnp.sum(finite, axis=-1, keepdims=True), 1)
    order = jnp.argsort(jnp.where(finite, flat, jnp.inf), axis=-1)  # no data last
    rank = jnp.arange(flat.shape[-1])[None, :]
    index = jnp.clip(jnp.floor((rank + 0.5) * (m / n)).astype(jnp.int32), 0, jnp.maximum(m - 1, 0))
    in_order = jnp.take_along_axis(ordered, index, axis=-1)  # the value of each rank
    matched = jax.vmap(lambda o, v: jnp.zeros_like(v).at[o].set(v))(order, in_order)
    out = jnp.where(finite & (m > 0), matched, jnp.where(finite, flat, jnp.nan))
    return out.reshape(values.shape)


def _sorted(x: Float[Array, "*lead pixels"]) -> Float[Array, "*lead pixels"]:
    """`x` sorted along its last axis, no data (NaN) last as +inf. Float32 is sorted as int32
    keys of the same order: XLA's CPU sort takes a faster path for one integer operand than for
    floats (4 against 24 ms for 12 frames of 64 x 64 on one core)."""
    x = jnp.where(jnp.isfinite(x), x, jnp.inf)
    if x.dtype != jnp.float32:
        return jnp.sort(x, axis=-1)
    return _from_key(jnp.sort(_key(x), axis=-1))


def _key(x: Float[Array, "*shape"]) -> Int[Array, "*shape"]:
    """int32 keys in the order of the float32 values: a negative float's magnitude bits flipped."""
    bits = jax.lax.bitcast_convert_type(x, jnp.int32)
    return jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)


def _from_key(key: Int[Array, "*shape"]) -> Float[Array, "*shape"]:
    """The float32 values of `_key` (the map is its own inverse)."""
    bits = jnp.where(key < 0, key ^ jnp.int32(0x7FFFFFFF), key)
    return jax.lax.bitcast_convert_type(bits, jnp.float32)


def straight_through(
    values: Float[Array, "*shape"], matched: Float[Array, "*shape"]
) -> Float[Array, "*shape"]:
    """`matched` where it is finite (else `values`), exactly, with the gradient of `values`."""
    zero = values - jax.lax.stop_gradient(values)
    return jnp.where(jnp.isfinite(matched), zero + jax.lax.stop_gradient(matched), values)
