"""Synthetic advection: known translations, growth, missing data, and the random flows' ranges."""

import numpy as np
import pytest

from nowcastd.data.synthetic_flow import Flow, MotionConfig, advect_sequence, bilinear, random_flow


def _blob(shape: tuple[int, int], centre: tuple[float, float]) -> np.ndarray:
    rows, cols = np.indices(shape)
    return 10.0 * np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / 18.0)


def _uniform(shape, size, u_row, u_col, growth=0.0) -> Flow:
    return Flow(np.full(shape, u_row), np.full(shape, u_col), np.full(size, growth))


@pytest.mark.parametrize(("u_row", "u_col"), [(1.0, 0.0), (0.0, -2.0), (1.0, 1.0)])
def test_uniform_flow_moves_the_field_by_whole_pixels_per_step(u_row, u_col):
    source = _blob((40, 40), (20.0, 20.0))
    seq = advect_sequence(source, _uniform((40, 40), (16, 16), u_row, u_col), steps=4)
    for t in range(4):
        r0, c0 = 12 - int(t * u_row), 12 - int(t * u_col)  # where the window came from
        expected = source[r0 : r0 + 16, c0 : c0 + 16]
        np.testing.assert_allclose(seq[t], expected, rtol=1e-5, atol=1e-5)


def test_half_pixel_motion_interpolates_between_neighbours():
    source = np.zeros((20, 20))
    source[:, 10] = 4.0
    seq = advect_sequence(source, _uniform((20, 20), (8, 8), 0.0, 0.5), steps=2)
    # the line at source column 10 = output column 4 moves half a pixel right
    np.testing.assert_allclose(seq[1][:, 4], 2.0)
    np.testing.assert_allclose(seq[1][:, 5], 2.0)


def test_growth_multiplies_by_exp_rate_per_step():
    source = np.full((12, 12), 2.0)
    seq = advect_sequence(source, _uniform((12, 12), (6, 6), 0.0, 0.0, growth=0.1), steps=3)
    np.testing.assert_allclose(seq[2], 2.0 * np.exp(0.2), rtol=1e-6)


def test_missing_source_pixels_travel_as_nan():
    source = np.ones((20, 20))
    source[10, 10] = np.nan
    seq = advect_sequence(source, _uniform((20, 20), (8, 8), 0.0, 1.0), steps=3)
    assert np.isnan(seq[0][4, 4]) and np.isnan(seq[2][4, 6])
    assert np.isnan(seq[2]).sum() <= 4 and not np.isnan(seq[2][0, 0])


def test_source_smaller_than_the_grid_is_refused():
    with pytest.raises(ValueError, match="expected a source of at least"):
        advect_sequence(np.ones((4, 4)), _uniform((4, 4), (8, 8), 0.0, 0.0), steps=2)


def test_random_flows_stay_within_the_configured_ranges():
    motion = MotionConfig(max_speed=2.0, max_shear=0.5, max_growth=0.03)
    rng = np.random.default_rng(1)
    for _ in range(20):
        flow = random_flow((30, 30), (10, 10), motion, rng)
        speed = np.hypot(flow.u_row, flow.u_col)
        assert speed.max() <= 2.0 + 0.5 * np.sqrt(2) + 1e-9
        assert np.abs(flow.growth).max() <= 0.03 + 1e-12


def test_bilinear_is_exact_on_grid_points_and_linear_between():
    image = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(bilinear(image, np.array([1.0]), np.array([2.0])), [6.0])
    np.testing.assert_allclose(bilinear(image, np.array([0.5]), np.array([0.5])), [2.5])
