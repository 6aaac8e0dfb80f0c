"""Semi-Lagrangian advection in JAX against pysteps' own extrapolation."""

import contextlib
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model.advection import shift_in_time

with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints where its rc file is
    from pysteps.extrapolation.semilagrangian import extrapolate


def _field_and_motion(seed: int, h: int = 36, w: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    field = rng.random((h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    vx = rng.uniform(-2, 2) + 0.8 * np.sin(yy / 5.0 + rng.uniform(0, 6))
    vy = rng.uniform(-2, 2) + 0.6 * np.cos(xx / 4.0 + rng.uniform(0, 6))
    return field, np.stack([vx, vy])  # pysteps' (2, H, W), x first


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_shifts_match_pysteps_extrapolation(seed: int) -> None:
    field, motion = _field_and_motion(seed)
    steps = 5
    expected = extrapolate(field, motion, steps)  # NaN where advected in from outside

    fields = jnp.asarray(np.repeat(field[None, None, ..., None], steps, axis=1), jnp.float32)
    flow = jnp.asarray(np.moveaxis(motion, 0, -1)[None], jnp.float32)
    values, inside = shift_in_time(fields, flow, tuple(range(1, steps + 1)))
    got = np.where(np.asarray(inside) > 0, np.asarray(values), np.nan)[0, ..., 0]

    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(expected).any() and np.isfinite(expected).any()
    np.testing.assert_allclose(got, expected, atol=2e-5, equal_nan=True)


def test_backward_shift_is_extrapolation_along_the_reversed_motion() -> None:
    field, motion = _field_and_motion(3)
    expected = extrapolate(field, -motion, 3)[-1]
    fields = jnp.asarray(field[None, None, ..., None], jnp.float32)
    flow = jnp.asarray(np.moveaxis(motion, 0, -1)[None], jnp.float32)
    values, inside = shift_in_time(fields, flow, (-3,))
    got = np.where(np.asarray(inside) > 0, np.asarray(values), np.nan)[0, 0, ..., 0]
    np.testing.assert_allclose(got, expected, atol=2e-5, equal_nan=True)


def test_zero_offset_leaves_the_frame_as_it_is() -> None:
    field, motion = _field_and_motion(4)
    fields = jnp.asarray(field[None, None, ..., None], jnp.float32)
    flow = jnp.asarray(np.moveaxis(motion, 0, -1)[None], jnp.float32)
    values, inside = shift_in_time(fields, flow, (0,))
    np.testing.assert_array_equal(np.asarray(values)[0, 0, ..., 0], field.astype(np.float32))
    assert float(jnp.min(inside)) == 1.0


def test_advection_is_differentiable_in_the_advected_values() -> None:
    field, motion = _field_and_motion(5)
    flow = jnp.asarray(np.moveaxis(motion, 0, -1)[None], jnp.float32)

    def total(x: jax.Array) -> jax.Array:
        values, inside = shift_in_time(x, flow, (2,))
        return jnp.sum(values * inside)

    x = jnp.asarray(field[None, None, ..., None], jnp.float32)
    grad = jax.grad(total)(x)
    assert bool(jnp.all(jnp.isfinite(grad)))
    # each pixel that lands inside carries weight 1 from its four source neighbours
    values, inside = shift_in_time(x, flow, (2,))
    np.testing.assert_allclose(float(jnp.sum(grad)), float(jnp.sum(inside)), rtol=1e-5)
    with pytest.raises(ValueError, match="2 offsets"):
        shift_in_time(x, flow, (1, 2))
