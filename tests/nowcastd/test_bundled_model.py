"""The model that ships in the package: serve, predict and evaluate use it when no checkpoint is
named, on any grid that is a multiple of its patch size."""

import json
from pathlib import Path

from typer.testing import CliRunner

from nowcastd.cli import app
from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.model_checkpoint import bundled_checkpoint, load_model
from tests.paths import FIXTURES

# The native KNMI grid cropped to 256 x 256 km and averaged to 4 km (64 x 64), and a 2 km grid
DOMAIN = """[domain]
native_shape = [765, 700]
row0 = 268
col0 = 248
height = {size}
width = {size}
block = {block}
"""


def test_bundled_model_is_fully_convolutional_with_an_hour_of_leads():
    loaded = load_model(None)
    cfg = loaded.cfg
    assert loaded.path == bundled_checkpoint()
    assert not cfg.layer_norm and not cfg.is_action and cfg.img_channel == 1
    assert (cfg.total_length - cfg.input_length) * 300 == 3600
    assert loaded.transform.is_physical
    # it corrects pysteps' Lucas-Kanade extrapolation and takes each lead's value distribution
    # from that extrapolation (MODEL_CARD.md), not from the inputs' (match_intensity)
    assert cfg.lagrangian and cfg.predict_delta
    assert cfg.match_extrapolation and not cfg.match_intensity
    assert loaded.motion_method == "LK"


def _predict(tmp_path: Path, size: int, block: int) -> dict:
    config = tmp_path / f"domain{block}.toml"
    config.write_text(DOMAIN.format(size=size, block=block))
    scans = sorted(str(p) for p in (FIXTURES / "knmi").glob("RAD_NL25_*.h5"))
    result = CliRunner().invoke(
        app, ["predict", *scans, "--config", str(config), "--output-dir", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    return read_forecast(result.output.strip().splitlines()[-1])


def test_predict_without_a_checkpoint_forecasts_with_the_bundled_model_on_any_grid(tmp_path):
    digest = load_model(None).digest
    for size, block in ((256, 4), (128, 2)):
        forecast = _predict(tmp_path, size, block)
        assert forecast.precip.shape == (12, size // block, size // block)
        assert forecast.attrs["checkpoint_digest"] == digest
        assert forecast.lead_seconds[-1] == 3600


def test_evaluate_without_a_checkpoint_scores_the_bundled_model(tmp_path):
    movie = FIXTURES / "radar" / "movie_small.h5"
    result = CliRunner().invoke(
        app,
        ["evaluate", "--data", str(movie), "--lead-frames", "2", "--no-baselines", "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report["methods"]) == ["model"]
    assert len(report["lead_minutes"]) == 2
