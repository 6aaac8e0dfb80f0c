"""The one forecast function: serve and evaluate give identical fields for the same window."""

import dataclasses
from datetime import UTC, datetime, timedelta

import equinox as eqx
import jax
import numpy as np

from model.rollout import rollout
from model.strategy import DEFAULT, Strategy, parse_strategy
from nowcastd.nowcast import Window, rollout_rates_program
from nowcastd.serve.config import ServeConfig
from nowcastd.serve.outcome import Written
from nowcastd.serve.pipeline import Pipeline
from nowcastd.verification.comparison import model_forecast
from tests.nowcastd.serve.tiny import DBZ, tiny_model

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_serve_and_evaluate_give_identical_fields_for_the_same_window(tmp_path):
    rng = np.random.default_rng(0)
    rates = rng.gamma(0.6, 8.0, (3, 16, 16)).astype(np.float32)
    rates[0, :4, :4] = np.nan  # no data in an older frame: enters both as 0
    rates[2, 10:, :3] = np.nan  # and in the newest: NaN in both forecasts
    paths = []
    for i, field in enumerate(rates):
        paths.append(tmp_path / f"scan_{T0 + timedelta(minutes=5 * i):%Y%m%d%H%M}.npy")
        np.save(paths[-1], field)
    tiny = tiny_model()
    loud = eqx.tree_at(lambda n: n.conv_last, tiny.network, tiny.network.conv_last * 100.0)
    loaded = dataclasses.replace(tiny, network=loud)  # outputs beyond [0, 1]: clipping matters
    raw = np.asarray(rollout(loud, Window.from_rates(rates[None], DBZ).context, 3))
    assert raw.max() > 1.0 and raw.min() < 0.0
    pipe = Pipeline(
        ServeConfig(timestep_seconds=300.0, output_dir=tmp_path / "out", strategy=DEFAULT), loaded
    )
    pipe.compile(pre_encoding=False)
    served = pipe.step(paths, T0 + timedelta(hours=1))[-1]
    assert isinstance(served, Written)

    evaluated = model_forecast(loaded, rates[None], leads=pipe.num_leads, batch=1)[0]

    np.testing.assert_array_equal(served.forecast.precip, evaluated)
    assert np.isnan(evaluated[:, 10:, :3]).all() and not np.isnan(evaluated[:, :10]).any()


def _compiled_text(strategy: Strategy, *args) -> str:
    """The XLA program evaluate runs under `strategy` for `args`, as compiled."""
    compiled = rollout_rates_program(strategy).lower(*args).compile()
    return compiled.compiled.as_text()  # equinox wraps jax's


def test_a_bf16_model_keeps_its_strategy_through_evaluation():
    """Evaluation (`model_forecast`, as `evaluate` and bench_evaluate score a model) runs the
    model's rollout compiled with both parts of its strategy: bf16=on keeps XLA's YNN fusions,
    which the float32 default leaves out, and multiplies in bfloat16, close to float32 but not
    equal."""
    tiny = tiny_model()
    net = eqx.tree_at(lambda n: n.conv_last, tiny.network, tiny.network.conv_last * 10.0)
    f32_model = dataclasses.replace(tiny, network=net)  # rain, not ~0
    bf16_model = dataclasses.replace(f32_model, strategy=parse_strategy("bf16=on"))
    rates = np.random.default_rng(1).gamma(0.6, 8.0, (1, 3, 16, 16)).astype(np.float32)
    f32 = model_forecast(f32_model, rates, leads=3, batch=1)
    bf16 = model_forecast(bf16_model, rates, leads=3, batch=1)
    assert f32.max() > 1.0 and not np.array_equal(f32, bf16)
    np.testing.assert_allclose(bf16, f32, atol=0.02 * float(f32.max()))

    args = (net, DBZ, Window.from_rates(rates, DBZ).context, 3, None)
    assert "ynn_fusion" in _compiled_text(bf16_model.strategy, *args)
    assert "ynn_fusion" not in _compiled_text(DEFAULT, *args)
    # and that program is the one evaluation ran (the default gives other values)
    np.testing.assert_array_equal(bf16, rollout_rates_program(bf16_model.strategy)(*args))
    np.testing.assert_array_equal(f32, rollout_rates_program(DEFAULT)(*args))


def test_forecast_rates_never_exceed_the_models_range_and_drizzle_is_no_rain():
    x = np.array([-0.5, 0.0, 0.5, 1.0, 1.7, np.nan, 1e-4, 0.12], np.float32)
    rates = DBZ.to_rates(x)
    top = DBZ.to_physical(np.float32(1.0))
    np.testing.assert_array_equal(rates[[0, 1]], 0.0)  # below range: no rain
    assert np.isnan(rates[5])  # no data stays no data
    np.testing.assert_array_equal(rates[[3, 4]], top)  # above the range: clipped to its top
    assert 0 < rates[2] < top
    # just above 0 is 0.036 mm/h on the dBZ scale, below RAIN_THRESHOLD_MM_H: no rain
    assert DBZ.to_physical(x[6]) > 0.03 and rates[6] == 0.0
    assert rates[7] == DBZ.to_physical(x[7]) > 0.1


def test_window_from_rates_fills_no_data_with_zero_and_masks_the_newest_frame():
    rates = np.full((2, 3, 4, 4), 2.0, np.float32)
    rates[1, 0, 0, 0] = np.nan  # an older frame: filled, not masked
    rates[1, 2, 3, 3] = np.nan  # the newest frame: filled and masked
    window = Window.from_rates(rates, DBZ)
    assert window.context.shape == (2, 3, 4, 4, 1)
    assert window.context[1, 0, 0, 0, 0] == 0.0 and window.context[1, 2, 3, 3, 0] == 0.0
    assert window.no_data.sum() == 1 and window.no_data[1, 3, 3]


def _moving_storm() -> np.ndarray:
    """(3, 32, 32) mm/h: showers and a core above the model's range (60 dBZ, ~205 mm/h) that
    move two pixels a step, with no data in a corner of the newest frame."""
    rng = np.random.default_rng(5)
    base = rng.gamma(0.6, 4.0, (32, 48)).astype(np.float32)
    base[12:14, 22:25] = 320.0  # heavy rain (6 pixels), clipped by the model units
    frames = np.stack([base[:, 10 - 2 * t : 42 - 2 * t] for t in range(3)])
    frames[2, 26:, :4] = np.nan
    return frames


def test_serve_predict_and_evaluate_forecast_the_same_heavy_rain_window_alike(tmp_path):
    """One window, four ways in: serve's pipeline, `nowcastd predict`, evaluate on a movie
    (motion shared with the baselines) and evaluate on clips (model units): identical fields
    from a Lagrangian model, although the window rains 320 mm/h."""
    from typer.testing import CliRunner

    from model.config import ModelConfig
    from model.network import PredRNN
    from nowcastd.cli import app
    from nowcastd.data.motion import MotionEstimator
    from nowcastd.io.forecast_file import read_forecast
    from nowcastd.io.model_checkpoint import load_model, save_inference_checkpoint
    from nowcastd.verification.evaluation import _forecasts

    rates = _moving_storm()
    assert np.nanmax(rates) > DBZ.to_physical(np.float32(1.0)) > 200.0
    cfg = ModelConfig(
        model_name="predrnn_v2", num_hidden=(8, 8), filter_size=3, patch_size=4, img_height=32,
        img_width=32, input_length=3, total_length=6, predict_delta=True, lagrangian=True,
    )  # fmt: skip
    ckpt = save_inference_checkpoint(
        tmp_path / "ckpt", PredRNN(cfg, key=jax.random.key(7)), DBZ, motion_method="LK"
    )
    loaded = load_model(ckpt)
    paths = []
    for i, field in enumerate(rates):
        paths.append(tmp_path / f"scan_{T0 + timedelta(minutes=5 * i):%Y%m%d%H%M}.npy")
        np.save(paths[-1], field)
    pipe = Pipeline(
        ServeConfig(timestep_seconds=300.0, output_dir=tmp_path / "out", strategy=DEFAULT), loaded
    )
    pipe.compile(pre_encoding=False)
    served = pipe.step(paths, T0 + timedelta(hours=1))[-1]
    assert isinstance(served, Written)
    predicted = CliRunner().invoke(
        app,
        ["predict", *map(str, paths), "--checkpoint", str(ckpt)]
        + ["--output-dir", str(tmp_path / "predicted")],
    )
    assert predicted.exit_code == 0, predicted.output
    predict_file = read_forecast(predicted.output.strip().splitlines()[-1])

    window = Window.from_rates(rates[None], DBZ)
    motion = MotionEstimator("LK").batch(window.motion)  # as compare shares it
    on_movie = model_forecast(loaded, rates[None], pipe.num_leads, 1, motion)[0]
    alone = model_forecast(loaded, rates[None], pipe.num_leads, 1)[0]
    clips = np.concatenate([window.context, np.zeros((1, 3, 32, 32, 1), np.float32)], axis=1)
    valid = np.isfinite(np.concatenate([rates, rates]))[None, ..., None].astype(np.float32)
    on_clips = _forecasts(loaded.network, DBZ, MotionEstimator("LK"))(clips, valid)[0]

    for other in (on_movie, alone, on_clips):
        np.testing.assert_array_equal(served.forecast.precip, other)
    # predict writes the same file as serve (files store rates rounded to their precision)
    np.testing.assert_array_equal(read_forecast(served.file).precip, predict_file.precip)
    assert np.isnan(on_movie[:, 26:, :4]).all()
    # the clipped motion input matters: raw mm/h move this window differently
    raw = MotionEstimator("LK").batch(rates[None])
    assert not np.array_equal(raw, motion)


#: The halo scenes: 48 x 48 native scans, the model grid their middle 32 x 32 (rows and
#: columns 8..40), so the default halo is the 8 pixels around it.
HALO_CROP = (8, 8, 32, 32)


def _inflow_storm() -> np.ndarray:
    """(3, 48, 48) native mm/h: showers moving two pixels a step to the right, with a storm
    (cores above the model's range) just left of the model grid in the newest scan, which
    enters the grid within three steps; no data inside the grid and in the margin of the
    newest scan."""
    rng = np.random.default_rng(11)
    base = rng.gamma(0.6, 4.0, (48, 60)).astype(np.float32)
    base[18:26, 10:15] = 40.0  # newest scan: native columns 2..6, the margin
    base[20:23, 11:13] = 320.0
    frames = np.stack([base[:, 12 - 2 * t : 60 - 2 * t] for t in range(3)])
    frames[2, 30:36, 30:36] = np.nan  # the radar did not see these (inside the grid)
    frames[2, 0:4, 40:48] = np.nan  # nor these (in the margin)
    return frames


def _halo_model(tmp_path):
    from model.config import ModelConfig
    from model.network import PredRNN
    from nowcastd.io.model_checkpoint import load_model, save_inference_checkpoint

    cfg = ModelConfig(
        model_name="predrnn_v2", num_hidden=(8, 8), filter_size=3, patch_size=4, img_height=32,
        img_width=32, input_length=3, total_length=6, predict_delta=True, lagrangian=True,
    )  # fmt: skip
    network = PredRNN(cfg, key=jax.random.key(7))
    network = eqx.tree_at(lambda n: n.conv_last, network, network.conv_last + 0.01)
    ckpt = save_inference_checkpoint(tmp_path / "ckpt", network, DBZ, motion_method="LK")
    return ckpt, load_model(ckpt)


def _serve(tmp_path, loaded, paths, domain, out):
    pipe = Pipeline(
        ServeConfig(
            timestep_seconds=300.0, output_dir=tmp_path / out, strategy=DEFAULT, domain=domain
        ),
        loaded,
    )
    pipe.compile(pre_encoding=False)
    served = pipe.step(paths, T0 + timedelta(hours=1))[-1]
    assert isinstance(served, Written)
    return pipe, served


def test_a_halo_forecasts_the_rain_the_radar_saw_outside_the_grid_alike_everywhere(tmp_path):
    """Serve, `nowcastd predict` and evaluate (a movie read with the same crop) forecast the
    same field from a window with a halo; the storm the radar saw left of the grid enters the
    forecast, which is NaN only where the radar saw nothing; without a halo those pixels are
    NaN."""
    from typer.testing import CliRunner

    from nowcastd.cli import app
    from nowcastd.io.domain import Domain
    from nowcastd.io.forecast_file import read_forecast
    from nowcastd.verification.comparison import _Forecasters
    from nowcastd.verification.sequence import read_movie_sequence

    native = _inflow_storm()
    ckpt, loaded = _halo_model(tmp_path)
    paths = []
    for i, field in enumerate(native):
        paths.append(tmp_path / f"scan_{T0 + timedelta(minutes=5 * i):%Y%m%d%H%M}.npy")
        np.save(paths[-1], field)
    domain = Domain.from_crop((48, 48), HALO_CROP)
    assert domain.halo == 8 and domain.with_halo().model_shape == (48, 48)
    pipe, served = _serve(tmp_path, loaded, paths, domain, "out")
    forecast = served.forecast.precip
    # NaN only where the radar never saw: the newest scan's no data inside the grid
    seen = np.isnan(native[2, 8:40, 8:40])
    np.testing.assert_array_equal(np.isnan(forecast), np.broadcast_to(seen, forecast.shape))
    storm = (slice(11, 16), slice(0, 3))  # model pixels the storm reaches at +15 min
    assert (forecast[2][storm] > 20.0).all(), forecast[2][storm]
    _, alone = _serve(tmp_path, loaded, paths, dataclasses.replace(domain, halo_km=0.0), "no")
    assert np.isnan(alone.forecast.precip[2][storm]).all()

    config = tmp_path / "predict.toml"
    config.write_text(
        "[domain]\nnative_shape = [48, 48]\nrow0 = 8\ncol0 = 8\nheight = 32\nwidth = 32\n"
    )
    predicted = CliRunner().invoke(
        app,
        ["predict", *map(str, paths), "--checkpoint", str(ckpt), "--config", str(config)]
        + ["--output-dir", str(tmp_path / "predicted")],
    )
    assert predicted.exit_code == 0, predicted.output
    predict_file = read_forecast(predicted.output.strip().splitlines()[-1])
    np.testing.assert_array_equal(read_forecast(served.file).precip, predict_file.precip)

    import h5py

    with h5py.File(tmp_path / "movie.h5", "w") as h:
        h.create_dataset("precip", data=native).attrs["units"] = "mm/h"
        h.attrs["timestep_seconds"] = 300
    seq = read_movie_sequence(tmp_path / "movie.h5", crop=HALO_CROP)
    assert seq.margin == 8
    evaluated = _Forecasters(loaded, ["model"]).forecasts(
        seq.window_frames[None], pipe.num_leads, 1, seq.margin
    )["model"][0]
    np.testing.assert_array_equal(forecast, evaluated)
