from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nowcastd.errors import ScanError
from nowcastd.io.domain import Domain, block_average
from nowcastd.io.readers import GridInfo, Scan, ScanRefused, read_scan
from nowcastd.io.transform import DataTransform
from tests.paths import FIXTURES

KNMI = FIXTURES / "knmi" / "RAD_NL25_RAP_5min_201008260000.h5"
MOVIE_CROP = dict(native_shape=(765, 700), row0=268, col0=248, height=256, width=256)


def test_crop_of_real_knmi_scan_has_no_nan_and_model_shape():
    domain = Domain(**MOVIE_CROP)
    out = domain.apply(read_scan(KNMI))
    assert out.shape == domain.model_shape == (256, 256)
    assert out.dtype == np.float32 and not np.isnan(out).any()


def test_block_two_halves_the_model_grid_and_averages():
    domain = Domain(**MOVIE_CROP, block=2)
    scan = read_scan(KNMI)
    out = domain.apply(scan)
    crop = Domain(**MOVIE_CROP).apply(scan)
    assert out.shape == domain.model_shape == (128, 128)
    np.testing.assert_allclose(out, crop.reshape(128, 2, 128, 2).mean(axis=(1, 3)), rtol=1e-6)


def test_block_is_nan_only_when_every_pixel_is_nan():
    field = np.array(
        [[1.0, np.nan, np.nan, np.nan], [3.0, np.nan, np.nan, np.nan]], dtype=np.float32
    )
    domain = Domain(native_shape=(2, 4), row0=0, col0=0, height=2, width=4, block=2)
    out = domain.apply(field)
    assert out[0, 0] == pytest.approx(2.0)
    assert np.isnan(out[0, 1])


@given(
    field=hnp.arrays(
        np.float32, (6, 8), elements=st.floats(0, 100, width=32) | st.just(np.float32("nan"))
    ),
    block=st.sampled_from([1, 2]),
)
def test_block_mean_matches_nanmean_of_valid_pixels(field, block):
    domain = Domain(native_shape=(6, 8), row0=0, col0=0, height=6, width=8, block=block)
    out = domain.apply(field)
    tiles = field.reshape(6 // block, block, 8 // block, block)
    all_nan = np.isnan(tiles).all(axis=(1, 3))
    np.testing.assert_array_equal(np.isnan(out), all_nan)
    with np.errstate(invalid="ignore"):
        expected = np.nansum(tiles, axis=(1, 3), dtype=np.float64) / (~np.isnan(tiles)).sum(
            axis=(1, 3)
        )
    np.testing.assert_allclose(out[~all_nan], expected[~all_nan], rtol=1e-5, atol=1e-6)


def test_wrong_native_shape_is_rejected_not_resampled():
    domain = Domain(**MOVIE_CROP)
    scan = Scan(
        field=np.zeros((256, 256), np.float32),
        valid_time=datetime(2026, 1, 1, tzinfo=UTC),
        grid=GridInfo(shape=(256, 256)),
        path=Path("scan_202601010000.npy"),
        source_format="npy",
    )
    with pytest.raises(
        ScanError,
        match=r"scan scan_202601010000\.npy: expected grid \(765, 700\), got \(256, 256\)",
    ):
        domain.apply(scan)


def test_crop_grid_moves_extent_and_pixel_size():
    grid = Domain(**MOVIE_CROP, block=2).crop_grid(read_scan(KNMI).grid)
    assert grid.shape == (128, 128)
    assert (grid.x1, grid.x2, grid.y1, grid.y2) == (
        248_000.0,
        504_000.0,
        -4_174_000.0,
        -3_918_000.0,
    )
    assert grid.xpixelsize == grid.ypixelsize == 2000.0
    assert grid.corners_lonlat is None
    assert grid.projection.startswith("+proj=stere")


def test_crop_grid_of_lower_origin_counts_rows_from_south():
    grid = GridInfo(
        shape=(10, 10),
        x1=0.0,
        x2=10.0,
        y1=0.0,
        y2=10.0,
        yorigin="lower",
        xpixelsize=1.0,
        ypixelsize=1.0,
    )
    out = Domain(native_shape=(10, 10), row0=2, col0=3, height=4, width=4).crop_grid(grid)
    assert (out.x1, out.x2, out.y1, out.y2) == (3.0, 7.0, 2.0, 6.0)


def test_full_domain_is_identity():
    field = np.arange(12, dtype=np.float32).reshape(3, 4)
    domain = Domain.full((3, 4))
    np.testing.assert_array_equal(domain.apply(field), field)
    grid = GridInfo(shape=(3, 4), corners_lonlat=((0, 0), (0, 1), (1, 1), (1, 0)))
    assert domain.crop_grid(grid) == grid


@pytest.mark.parametrize(
    "geometry",
    [
        {"xpixelsize": 1000.0, "ypixelsize": 1e308},
        {"x1": -1e308, "x2": 1e308, "y1": 0.0, "y2": 8000.0},
    ],
)
def test_a_geometry_the_crop_makes_infinite_is_refused_as_bad_geometry(geometry):
    grid = GridInfo(shape=(8, 8), **geometry)
    with pytest.raises(ScanRefused, match=r"yscale\.h5: expected a grid geometry") as refused:
        Domain.full((8, 8), block=4).crop_grid(grid, name="yscale.h5")
    assert refused.value.reason == "bad_geometry"
    assert "got GridInfo" in str(refused.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"native_shape": (0, 10)}, "Domain.native_shape: expected two positive ints"),
        ({"row0": -1}, r"Domain.row0: expected an int >= 0, got -1"),
        ({"height": 0}, r"Domain.height: expected an int >= 1, got 0"),
        ({"height": 600}, r"Domain.height: expected row0 \+ height <= 765"),
        ({"width": 500}, r"Domain.width: expected col0 \+ width <= 700"),
        ({"block": 3}, r"Domain.height: expected a multiple of block=3, got 256"),
        ({"block": True}, r"Domain.block: expected an int >= 1, got True"),
        ({"col0": 1.5}, r"Domain.col0: expected an int >= 0, got 1.5"),
    ],
)
def test_invalid_domain_names_field_value_and_allowed(changes, message):
    with pytest.raises(ValueError, match=message):
        Domain(**{**MOVIE_CROP, **changes})


def test_non_finite_pixels_have_no_data_and_tiles_average_the_rest():
    field = np.array([[1.0, np.inf, 4.0, np.nan], [3.0, -np.inf, np.nan, np.nan]], np.float32)
    mean, valid = block_average(field, 2)
    np.testing.assert_array_equal(mean, [[2.0, 4.0]])
    np.testing.assert_array_equal(valid, [[0.5, 0.25]])
    model, valid = Domain.full((2, 4), block=2).model_input(field, DataTransform(kind="identity"))
    np.testing.assert_array_equal(model, [[2.0, 4.0]])
    empty = np.full((2, 2), np.nan, np.float32)
    model, valid = Domain.full((2, 2), block=2).model_input(empty, DataTransform(kind="dbz"))
    assert model.tolist() == [[0.0]] and valid.tolist() == [[0.0]]


def test_domain_projection_and_extent_describe_only_grids_that_lack_them():
    domain = Domain(
        native_shape=(4, 4),
        row0=0,
        col0=0,
        height=4,
        width=4,
        block=2,
        projection="+proj=laea +lat_0=52",
        extent=(0, 0, 4000, 4000),
    )
    bare = domain.crop_grid(GridInfo(shape=(4, 4)))
    assert bare.projection == "+proj=laea +lat_0=52"
    assert (bare.x1, bare.y1, bare.x2, bare.y2, bare.xpixelsize) == (0, 0, 4000, 4000, 2000)
    own = GridInfo(shape=(4, 4), projection="+proj=stere", x1=10, y1=10, x2=14, y2=14)
    kept = domain.crop_grid(own)
    assert (kept.projection, kept.x1, kept.x2) == ("+proj=stere", 10, 14)
    with pytest.raises(ValueError, match=r"Domain.extent: expected x1, y1, x2, y2 .* got"):
        Domain(native_shape=(4, 4), row0=0, col0=0, height=4, width=4, extent=(5, 0, 4, 4))


KNMI_EXTENT = (0.0, -4415000.0, 700000.0, -3650000.0)  # 765 x 700 pixels of 1 km


def test_the_default_halo_is_what_the_scan_offers_at_most_half_the_grid():
    sample = Domain(native_shape=(765, 700), row0=268, col0=248, height=256, width=256, block=4)
    # the right edge has 700 - 504 = 196 native pixels (49 model pixels), the cap is 64 / 2
    assert sample.fitting_halo == 49 and sample.halo == 32
    padded = sample.with_halo()
    assert padded.crop == (268 - 128, 248 - 128, 512, 512) and padded.model_shape == (128, 128)
    assert padded.halo == 0 and padded.with_halo() == padded
    narrow = Domain(native_shape=(765, 700), row0=268, col0=248, height=256, width=452, block=4)
    assert narrow.halo == 0 and narrow.with_halo() == narrow  # the window touches the edge
    assert Domain.full((64, 64), block=2).halo == 0


def test_the_halo_in_km_is_whole_model_pixels_and_must_fit_and_know_the_pixel_size():
    window = {"native_shape": (765, 700), "row0": 268, "col0": 248, "height": 256, "width": 256}
    at_4km = Domain(**window, block=4, extent=KNMI_EXTENT, halo_km=50.0)
    assert at_4km.native_pixel_km == pytest.approx(1.0) and at_4km.halo == 12  # 50 / 4 km
    assert Domain(**window, block=4, halo_km=0.0).halo == 0
    with pytest.raises(ValueError, match=r"halo_km: expected at most 196 km .* got 200"):
        Domain(**window, block=4, extent=KNMI_EXTENT, halo_km=200.0)
    with pytest.raises(ValueError, match="halo_km: expected extent too"):
        Domain(**window, block=4, halo_km=50.0)
    with pytest.raises(ValueError, match="halo_km: expected a number of km >= 0, got -1"):
        Domain(**window, block=4, extent=KNMI_EXTENT, halo_km=-1.0)


def test_the_padded_grid_holds_the_model_grid_tile_for_tile():
    field = np.random.default_rng(2).gamma(0.6, 3.0, (765, 700)).astype(np.float32)
    field[300:340, 100:260] = np.nan  # no data across the window's left edge
    sample = Domain(native_shape=(765, 700), row0=268, col0=248, height=256, width=256, block=4)
    padded, m = sample.with_halo().apply(field), sample.halo
    np.testing.assert_array_equal(padded[m:-m, m:-m], sample.apply(field))
