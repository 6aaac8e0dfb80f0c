"""Loss terms that do not pay for blur, each beside the pixel loss with its own weight (off at 0).

A forecast that cannot know where rain will be minimises the mean squared error by smearing
it: the blur lowers the expected error, and the rain's area grows while its cores fade. These
terms score what blur destroys:

* `fourier_amplitude`: the squared difference of the forecast's and the target's Fourier
  amplitudes, frame by frame (the amplitude term of Yan et al., "Fourier Amplitude and
  Correlation Loss", NeurIPS 2024). The amplitudes say how much variance each scale holds, not
  where: a forecast shifted by a few pixels keeps them, a blurred one loses the small scales.
  With orthonormal FFTs (Parseval) the term is on the scale of the MSE and never above it.
* `fourier_correlation`: one minus the correlation of the two spectra, frame by frame (the
  paper's correlation term, which places the rain the amplitude term does not). By Parseval it
  equals one minus the cosine similarity of the two fields in pixel space, computed there.
* `intensity_l1`: NowcastNet's intensity-weighted L1 (Zhang et al., Nature 2023): |error| with a
  weight that grows with the observed rain rate R, w = min(24, 1 + R / (mm/h)), so heavy rain
  is not traded for dry pixels. The model knows only its own units: the weight is a table of
  (target in model units, weight) knots, linear between them and constant beyond, which the
  caller builds from mm/h through the data transform (`nowcastd.train.loop.objective`).

All three take image-space fields (batch, time, height, width, channels) and the pixel weights
of the loss (1 = scored, 0 = no data), normalised like the MSE over the scored pixels, and are
zero for identical fields.
"""

import jax.numpy as jnp
from jaxtyping import Array, Float

#: The correlation's regulariser: two dry frames correlate perfectly, a dry forecast of a wet
#: frame not at all (rain of 0.1 model units on one pixel has 1e-2 of energy, far above it).
CORRELATION_EPS = 1e-6
#: Added to the squared amplitudes, so their square root has a gradient at zero amplitude.
AMPLITUDE_EPS = 1e-12

Frames = Float[Array, "batch time height width channels"]


def _masked(forecast: Frames, target: Frames, w: Frames | None) -> tuple[Frames, Frames]:
    """Both fields with the unscored pixels set to 0 (the forecast's values there mean nothing)."""
    if w is None:
        return forecast, target
    scored = w > 0
    return jnp.where(scored, forecast, 0.0), jnp.where(scored, target, 0.0)


def _amplitude(x: Frames) -> Frames:
    spectrum = jnp.fft.fft2(x, axes=(2, 3), norm="ortho")
    return jnp.sqrt(jnp.square(spectrum.real) + jnp.square(spectrum.imag) + AMPLITUDE_EPS)


def fourier_amplitude(
    forecast: Frames, target: Frames, w: Frames | None, norm: Array | float
) -> Float[Array, ""]:
    """Σ over frames and frequencies of (|F forecast| - |F target|)², divided by `norm` (the
    MSE's: the number of scored pixels)."""
    f, t = _masked(forecast, target, w)
    return jnp.sum(jnp.square(_amplitude(f) - _amplitude(t))) / norm


def fourier_correlation(forecast: Frames, target: Frames, w: Frames | None) -> Float[Array, ""]:
    """The mean over frames of 1 - (Σ f·t + ε) / sqrt((Σ f² + ε)(Σ t² + ε)), the spectra's
    correlation by Parseval; in [0, 2], 0 for identical frames."""
    f, t = _masked(forecast, target, w)
    axes = (2, 3)
    cross = jnp.sum(f * t, axis=axes) + CORRELATION_EPS
    energy = (jnp.sum(f * f, axis=axes) + CORRELATION_EPS) * (
        jnp.sum(t * t, axis=axes) + CORRELATION_EPS
    )
    return jnp.mean(1.0 - cross / jnp.sqrt(energy))


def intensity_weights(
    target: Float[Array, "*shape"], knots: tuple[float, ...], weights: tuple[float, ...]
) -> Float[Array, "*shape"]:
    """The weight of each target pixel: `weights` at the `knots` (model units), linear between
    them, the end weights beyond them."""
    return jnp.interp(target, jnp.asarray(knots), jnp.asarray(weights))


def intensity_l1(
    forecast: Frames,
    target: Frames,
    w: Frames | None,
    norm: Array | float,
    knots: tuple[float, ...],
    weights: tuple[float, ...],
) -> Float[Array, ""]:
    """Σ intensity weight · |forecast - target| over the scored pixels, divided by `norm`."""
    pixel = intensity_weights(target, knots, weights)
    if w is not None:
        pixel = pixel * w
    return jnp.sum(pixel * jnp.abs(forecast - target)) / norm
