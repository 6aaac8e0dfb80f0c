"""The members' noise, scale by scale as STEPS makes it, in JAX.

STEPS splits a field into a cascade of spatial scales and lets each evolve as an AR process:
the large scales stay predictable for an hour, the small ones for minutes, so its noise grows
fastest at small scales. Here the same in the Fourier domain, with no cascade to build:

1. the lag-1 correlation `rho_b` of the two newest context frames (in the network's frame of
   reference, where the rain's motion is taken out) in each of `BANDS` radial wavenumber bands,
   from their cross-spectrum;
2. white noise per member and lead, drawn in the Fourier domain, shaped by the scan's spectrum
   (the host's pysteps filter) and, at each wavenumber, an AR(1) in lead started from 0:
   e_k = rho e_{k-1} + sqrt(1 - rho^2) w_k, so its variance is 1 - rho^(2k): nothing at lead 0,
   the whole spectrum once the band has decorrelated (STEPS' error growth), and consecutive
   leads correlated as the rain is;
3. back in space, normalised so that fully decorrelated noise has unit variance.

The caller scales it by the newest frame's standard deviation (and `noise_gain`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["BANDS", "lead_noise"]

#: Radial wavenumber bands (log-spaced from the grid's largest scale to 2 pixels), as many as
#: pysteps' STEPS has cascade levels by default.
BANDS = 6


def _bands(h: int, w: int) -> np.ndarray:
    """(h, w // 2 + 1) band index of each rfft2 wavenumber (static: the shapes are)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    radius = np.hypot(fy, fx)
    edges = np.geomspace(1.0 / max(h, w), 0.5, BANDS + 1)[1:-1]
    index: np.ndarray = np.digitize(radius, edges).astype(np.int32)
    return index


def _band_correlations(
    previous: Float[Array, "n h w"], newest: Float[Array, "n h w"], bands: np.ndarray
) -> Float[Array, "n b"]:
    """The correlation of two frames in each band, in [0, 0.999] (0 where a band has no power)."""
    a = jnp.fft.rfft2(previous - previous.mean(axis=(1, 2), keepdims=True))
    b = jnp.fft.rfft2(newest - newest.mean(axis=(1, 2), keepdims=True))
    onehot = jnp.asarray(bands[None] == np.arange(BANDS)[:, None, None], jnp.float32)
    cross = jnp.einsum("bhw,nhw->nb", onehot, jnp.real(a * jnp.conj(b)))
    power = jnp.sqrt(
        jnp.einsum("bhw,nhw->nb", onehot, jnp.abs(a) ** 2)
        * jnp.einsum("bhw,nhw->nb", onehot, jnp.abs(b) ** 2)
    )
    return jnp.clip(jnp.where(power > 0, cross / jnp.maximum(power, 1e-12), 0.0), 0.0, 0.999)


def _half_weights(h: int, w: int) -> np.ndarray:
    """How often each rfft2 column stands for the full spectrum's (1 or 2)."""
    weights = np.full((h, w // 2 + 1), 2.0)
    weights[:, 0] = 1.0
    if w % 2 == 0:
        weights[:, -1] = 1.0
    return weights


def lead_noise(
    key: jax.Array,
    spectrum: Float[Array, "n h wr"],
    previous: Float[Array, "n h w"],
    newest: Float[Array, "n h w"],
    members: int,
    leads: int,
) -> Float[Array, "n m k h w"]:
    """Noise of `members` members at leads 1..`leads` for each window (see the module
    docstring): `spectrum` is the host's filter (rfft half), `previous` and `newest` the two
    newest context frames in the network's frame of reference."""
    n, h, w = newest.shape
    bands = _bands(h, w)
    rho = _band_correlations(previous, newest, bands)[:, bands]  # (n, h, wr)
    # white noise drawn as its Fourier transform (the rfft2 of unit white noise: complex normal,
    # E|W|^2 = h w), which saves a transform per field
    re, im = jax.random.normal(key, (2, n, members, leads, h, w // 2 + 1), jnp.float32)
    white = jax.lax.complex(re, im) * jnp.sqrt(h * w / 2.0)
    shaped = white * spectrum[:, None, None]
    step = jnp.sqrt(1.0 - rho**2)[:, None]  # (n, 1, h, wr)

    def ar1(previous: Array, innovation: Array) -> tuple[Array, Array]:
        e = rho[:, None] * previous + step * innovation
        return e, e

    _, evolved = jax.lax.scan(ar1, jnp.zeros_like(shaped[:, :, 0]), jnp.moveaxis(shaped, 2, 0))
    evolved = jnp.moveaxis(evolved, 0, 2)
    norm = jnp.sqrt(jnp.sum(_half_weights(h, w) * spectrum**2, axis=(1, 2)) / (h * w))
    field = jnp.fft.irfft2(evolved, s=(h, w))
    return field / jnp.maximum(norm, 1e-12)[:, None, None, None, None]
