"""Lucas–Kanade pair by pair (`nowcastd.data.motion_pairs`) gives pysteps' `dense_lucaskanade`
field on real radar windows, tracking each frame pair of a stream once."""

from __future__ import annotations

import numpy as np
import pytest

from nowcastd.data.motion import MotionEstimator, _pysteps_method, to_db
from nowcastd.data.motion_pairs import PairedLucasKanade, idw_field, local_outliers, pair_vectors
from nowcastd.io.readers import read_scan
from tests.paths import REPO

SAMPLE = REPO / "nowcastd" / "sample" / "knmi"


def _window(path: str) -> np.ndarray:
    """A 512 km square of a KNMI composite at 4 km (128 x 128: the demo's 64 x 64 window with
    its 32-pixel halo); about half of it lies outside the radars' range (NaN)."""
    native = np.asarray(read_scan(path).field, np.float64)[140:652, 120:632]
    return native.reshape(128, 4, 128, 4).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def stream() -> np.ndarray:
    paths = sorted(SAMPLE.glob("*.h5"))[::3][:7]
    return np.stack([_window(str(p)) for p in paths])


def _dense_lucaskanade(rates: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.asarray(_pysteps_method("LK")(to_db(rates), verbose=False))


def test_a_stream_of_windows_gets_pysteps_field_and_tracks_each_pair_once(stream):
    assert 0.3 < np.isnan(stream).mean() < 0.7 and (stream > 1.0).mean() > 0.05
    paired = PairedLucasKanade()
    fields = []
    for t in range(4, len(stream) + 1):
        with np.errstate(all="ignore"):
            got = paired(to_db(stream[t - 4 : t]))
        want = _dense_lucaskanade(stream[t - 4 : t])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        fields.append(got)
    assert paired.tracked == len(stream) - 1  # 4 windows, 6 pairs: each tracked once
    assert max(np.abs(f).max() for f in fields) > 0.5  # the rain moves
    assert not np.allclose(fields[0], fields[-1], atol=0.05)  # and each window has its field


def test_the_estimator_reusing_pairs_equals_the_plain_one(stream):
    plain, reusing = MotionEstimator(), MotionEstimator(reuse_pairs=True)
    for t in (4, 5, 4):  # back to an earlier window: its pairs come from the cache
        np.testing.assert_allclose(reusing(stream[t - 4 : t]), plain(stream[t - 4 : t]), atol=1e-6)


@pytest.mark.parametrize("fill", [0.0, np.nan], ids=["no_rain", "no_data"])
def test_windows_without_rain_or_data_give_pysteps_field(stream, fill):
    rates = stream[:4].copy()
    rates[-1] = fill  # the newest frame empty: its pair has no vectors
    got = MotionEstimator(reuse_pairs=True)(rates)
    np.testing.assert_allclose(got, MotionEstimator()(rates), atol=1e-6)
    empty = np.full((4, 128, 128), fill)
    np.testing.assert_array_equal(MotionEstimator(reuse_pairs=True)(empty), 0.0)
    np.testing.assert_array_equal(MotionEstimator()(empty), 0.0)


def test_interpolation_equals_pysteps_where_nearest_vectors_tie():
    from pysteps import utils

    rng = np.random.default_rng(3)
    # vectors on whole pixels, 10 px apart: many pixels are as far from the 20th as the 21st
    cols, rows = np.meshgrid(np.arange(2, 60, 10), np.arange(3, 48, 10))
    xy = np.column_stack((cols.ravel(), rows.ravel())).astype(np.float64)
    uv = rng.normal(size=xy.shape)
    want = utils.get_method("idwinterp2d")(xy, uv, np.arange(64), np.arange(50))
    got = idw_field(xy, uv, (50, 64))
    assert got.shape == want.shape == (2, 50, 64)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_outliers_are_pysteps_outliers(stream):
    from pysteps.utils.cleansing import detect_outliers

    db = to_db(stream[:4])
    with np.errstate(all="ignore"):
        pairs = [pair_vectors(db[n], db[n + 1]) for n in range(3)]
    xy = np.concatenate([p[0] for p in pairs])
    uv = np.concatenate([p[1] for p in pairs])
    uv[::17] += np.random.default_rng(0).normal(0.0, 3.0, uv[::17].shape)  # some go astray
    want = detect_outliers(uv, 3, xy, 30)
    assert len(uv) > 100 and 3 < want.sum() < len(uv) / 10
    np.testing.assert_array_equal(local_outliers(xy, uv), want)
    still = np.ones_like(uv)  # a singular covariance everywhere: pysteps' loop decides
    np.testing.assert_array_equal(local_outliers(xy, still), detect_outliers(still, 3, xy, 30))
    few = slice(0, 3)
    np.testing.assert_array_equal(
        local_outliers(xy[few], uv[few]), detect_outliers(uv[few], 3, xy[few], 30)
    )


def test_the_cache_keeps_the_newest_pairs_only(stream):
    paired = PairedLucasKanade(max_pairs=2)
    with np.errstate(all="ignore"):
        paired(to_db(stream[:4]))
        paired(to_db(stream[1:5]))  # the next window: two pairs kept, the newest tracked
        assert paired.tracked == 4
        paired(to_db(stream[:4]))  # the first window again: none of its pairs is left
    assert paired.tracked == 7
    with pytest.raises(ValueError, match="max_pairs: expected >= 1, got 0"):
        PairedLucasKanade(max_pairs=0)
    with pytest.raises(ValueError, match=r"expected \(I >= 2, H, W\) frames, got \(1, 8, 8\)"):
        PairedLucasKanade()(np.zeros((1, 8, 8)))
