"""The four-way comparison on a rain field moving exactly one pixel per time step."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nowcastd.errors import ConfigError, DataError
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.verification.baselines import LagrangianExtrapolation
from nowcastd.verification.comparison import compare, format_comparison, write_json
from nowcastd.verification.sequence import read_movie_sequence
from tests.nowcastd.verification.conftest import INPUT, tiny_config, write_movie

T, SIZE, RATE = 10, 64, 2.0
ROWS, WIDTH = slice(20, 36), 12  # a 16 x 12 rectangle of 2 mm/h
LEADS = 4


def moving_rectangle() -> np.ndarray:
    """(T, 64, 64) mm/h: the rectangle's left edge is at column 10 + t."""
    x = np.zeros((T, SIZE, SIZE), np.float32)
    for t in range(T):
        x[t, ROWS, 10 + t : 10 + t + WIDTH] = RATE
    return x


def test_persistence_scores_of_a_one_pixel_per_step_translation(tiny_model, tmp_path):
    seq = read_movie_sequence(write_movie(tmp_path / "m.h5", moving_rectangle()))
    report = compare(tiny_model, seq, lead_frames=LEADS, batch_size=4)

    starts = T - (INPUT + LEADS) + 1
    assert report.n_starts == starts and report.lead_minutes == (5, 10, 15, 20)
    p = report.methods["persistence"]
    height = ROWS.stop - ROWS.start
    for k in range(1, LEADS + 1):  # k columns move out of the rectangle, k move in
        hits, misses, false = (WIDTH - k) * height, k * height, k * height
        # the extrapolations have no data in the columns that rain enters from the west edge
        pixels = p.n_pixels[k - 1]
        assert starts * SIZE * (SIZE - k - 2) <= pixels < starts * SIZE * SIZE
        one = p.at(1.0)
        assert one.csi[k - 1] == pytest.approx(hits / (hits + misses + false))
        assert one.pod[k - 1] == pytest.approx(hits / (hits + misses))
        assert one.far[k - 1] == pytest.approx(false / (hits + false))
        assert one.frequency_bias[k - 1] == pytest.approx(1.0)  # as many pixels in as out
        assert math.isnan(p.at(5.0).csi[k - 1])  # no event at 5 mm/h anywhere
        assert p.mae[k - 1] == pytest.approx(starts * RATE * 2 * k * height / pixels)
        assert p.rmse[k - 1] == pytest.approx(math.sqrt(starts * RATE**2 * 2 * k * height / pixels))
        assert p.bias[k - 1] == pytest.approx(0.0, abs=1e-12)
    model = report.methods["model"]
    assert model.n_pixels == p.n_pixels
    assert all(math.isfinite(v) for v in model.mae)
    assert p.neighbourhood.px == 5  # 20 km of 4 km pixels (the movie states none)


def test_pysteps_extrapolation_of_a_pure_translation_is_near_perfect(tiny_model, tmp_path):
    seq = read_movie_sequence(write_movie(tmp_path / "m.h5", moving_rectangle()))
    report = compare(tiny_model, seq, lead_frames=LEADS, batch_size=4)

    assert report.not_scored == {}
    lk, persistence = report.methods["pysteps_lk"], report.methods["persistence"]
    for k in range(LEADS):
        assert lk.at(1.0).csi[k] == pytest.approx(1.0)
        assert lk.mae[k] < 0.01 * persistence.mae[k]
        assert lk.at(1.0).fss[k] > 0.999
    assert lk.n_pixels == persistence.n_pixels


def test_sprog_forecasts_the_translation_better_than_persistence(tiny_model, tmp_path):
    seq = read_movie_sequence(write_movie(tmp_path / "m.h5", moving_rectangle()))
    report = compare(tiny_model, seq, lead_frames=LEADS, batch_size=4)

    sprog, persistence = report.methods["pysteps_sprog"], report.methods["persistence"]
    assert sprog.n_pixels == persistence.n_pixels
    for k in range(LEADS):
        assert sprog.mae[k] < persistence.mae[k]
        assert sprog.at(1.0).csi[k] > persistence.at(1.0).csi[k]
    assert "S-PROG" in format_comparison(report)


def test_pixels_without_data_count_for_no_method(tiny_model, tmp_path):
    x = moving_rectangle()
    x[1, 40:44, 40:50] = np.nan  # a gap in older inputs: the forecasts still have data there
    x[4, 30:34, 5:9] = np.nan  # a gap in the newest input of start 2
    x[8, 50:52, 0:10] = np.nan  # an observation gap
    seq = read_movie_sequence(write_movie(tmp_path / "m.h5", x))
    report = compare(tiny_model, seq, lead_frames=LEADS, batch_size=4)

    extrapolate = LagrangianExtrapolation()
    for k in range(1, LEADS + 1):
        expected = 0
        for s in range(report.n_starts):
            newest = np.isfinite(x[s + INPUT - 1])  # persistence has data where it had
            advected = np.isfinite(extrapolate(x[s : s + INPUT], k)[-1])  # not from outside
            expected += int((newest & advected & np.isfinite(x[s + INPUT - 1 + k])).sum())
        counts = {m: r.n_pixels[k - 1] for m, r in report.methods.items()}
        assert set(counts.values()) == {expected}, counts
    # the gaps hold no rain, so persistence's absolute errors are those of the dense case
    starts, height = report.n_starts, ROWS.stop - ROWS.start
    p = report.methods["persistence"]
    for k in range(1, LEADS + 1):
        assert p.mae[k - 1] == pytest.approx(starts * RATE * 2 * k * height / p.n_pixels[k - 1])


def test_no_baselines_scores_the_model_only_and_says_so(tiny_model, tmp_path):
    seq = read_movie_sequence(write_movie(tmp_path / "m.h5", moving_rectangle()))
    report = compare(tiny_model, seq, baselines=False)

    assert list(report.methods) == ["model"]
    assert set(report.not_scored) == {"persistence", "pysteps_lk", "pysteps_sprog"}
    assert len(report.lead_minutes) == 2  # the model's total_length - input_length
    table = format_comparison(report)
    assert "persistence not scored: --no-baselines" in table
    assert "+10 min" in table and "+15 min" not in table


def test_json_is_strict_with_nan_as_null(tiny_model, tmp_path):
    seq = read_movie_sequence(write_movie(tmp_path / "m.h5", moving_rectangle()))
    report = compare(tiny_model, seq, lead_frames=LEADS, batch_size=4, baselines=False)
    path = write_json(tmp_path / "out" / "r.json", report)

    loaded = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert loaded["methods"]["model"]["csi_5_mm_h"] == [None] * LEADS  # no 5 mm/h event at all


def test_too_short_a_sequence_and_a_wrong_grid_are_refused(tiny_model, tmp_path):
    seq = read_movie_sequence(write_movie(tmp_path / "m.h5", moving_rectangle()))
    with pytest.raises(DataError, match="no 11 consecutive frames"):
        compare(tiny_model, seq, lead_frames=8)

    import jax

    from model.network import PredRNN

    with_norm = LoadedModel(
        network=PredRNN(
            tiny_config(layer_norm=True, img_height=32, img_width=32), key=jax.random.key(1)
        ),
        transform=tiny_model.transform,
        metadata={},
        digest="0" * 64,
        path=tmp_path,
    )
    with pytest.raises(ConfigError, match="layer norm ties it to one grid"):
        compare(with_norm, seq)
    odd = read_movie_sequence(tmp_path / "m.h5", crop=(0, 0, 62, 64))
    with pytest.raises(ConfigError, match="multiple of the patch size 4, got 62x64"):
        compare(tiny_model, odd)
