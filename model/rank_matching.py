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
from jaxtyping import Array, Float


def match_quantiles(
    values: Float[Array, "*lead height width channels"],
    reference: Float[Array, "*#lead height width channels"],
) -> Float[Array, "*lead height width channels"]:
    """Each frame of `values` with the value distribution of the same frame of `reference`
    (which may be broadcast along the leading axes: it is sorted before it is broadcast)."""
    lead = values.shape[:-3]
    flat = values.reshape(*lead, -1)
    ref = reference.reshape(*reference.shape[:-3], -1)
    ordered = jnp.broadcast_to(jnp.sort(jnp.where(jnp.isfinite(ref), ref, jnp.inf)), flat.shape)
    m = jnp.broadcast_to(jnp.sum(jnp.isfinite(ref), axis=-1, keepdims=True), (*lead, 1))
    finite = jnp.isfinite(flat)
    ranks = jnp.argsort(jnp.argsort(jnp.where(finite, flat, jnp.inf), axis=-1), axis=-1)
    n = jnp.maximum(jnp.sum(finite, axis=-1, keepdims=True), 1)
    index = jnp.floor((ranks + 0.5) * (m / n)).astype(jnp.int32)
    index = jnp.clip(index, 0, jnp.maximum(m - 1, 0))
    matched = jnp.take_along_axis(ordered, index, axis=-1)
    out = jnp.where(finite & (m > 0), matched, jnp.where(finite, flat, jnp.nan))
    return out.reshape(values.shape)


def straight_through(
    values: Float[Array, "*shape"], matched: Float[Array, "*shape"]
) -> Float[Array, "*shape"]:
    """`matched` where it is finite (else `values`), exactly, with the gradient of `values`."""
    zero = values - jax.lax.stop_gradient(values)
    return jnp.where(jnp.isfinite(matched), zero + jax.lax.stop_gradient(matched), values)
