"""A real `nowcastd serve` with `ensemble_members` > 0: every forecast file holds exceedance
probabilities that are the share of its members at or above each threshold, the ensemble is a
timed stage, and nothing compiles after ready."""

import dataclasses

import jax
import numpy as np
import pytest

from model.network import PredRNN
from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.model_checkpoint import save_inference_checkpoint
from nowcastd.io.transform import DataTransform
from tests.nowcastd.serve.daemon import Daemon
from tests.nowcastd.serve.daemon import value as _value
from tests.nowcastd.serve.tiny import tiny_network

MEMBERS = 5
THRESHOLDS = (0.1, 1.0, 5.0)
ENSEMBLE = f"""\
ensemble_members = {MEMBERS}
probability_thresholds_mm_h = {list(THRESHOLDS)}
ensemble_write_members = true
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A Lagrangian model with rank matching on a 24 x 24 grid inside a halo of 4 pixels."""
    root = tmp_path_factory.mktemp("serve-ensemble")
    cfg = dataclasses.replace(
        tiny_network(size=24).cfg, predict_delta=True, lagrangian=True, match_extrapolation=True
    )
    network = PredRNN(cfg, key=jax.random.key(5))
    save_inference_checkpoint(root / "ckpt", network, DataTransform(kind="dbz"), motion_method="LK")
    d = Daemon(root, crop=8, extra=ENSEMBLE)
    d.start()
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def test_ensemble_files_hold_probabilities_that_are_the_members_share(daemon):
    compilations = _value(daemon.metrics(), "nowcastd_jit_compilations_total")
    for i in range(4):
        daemon.move_in(i)
        daemon.wait_received(i + 1)
    path = daemon.wait_forecast(3)
    metrics = daemon.metrics()
    assert _value(metrics, "nowcastd_forecasts_written_total") == 2
    assert _value(metrics, "nowcastd_jit_compilations_total") == compilations  # 0 after ready
    assert _value(metrics, "nowcastd_stage_duration_seconds_count", stage="ensemble") == 2
    forecasts = [e for e in daemon.events() if e["event"] == "forecast"]
    assert len(forecasts) == 2 and all(e["seconds"]["ensemble"] > 0 for e in forecasts)

    served = read_forecast(path)
    ens = served.ensemble
    assert ens is not None and ens.members is not None
    assert ens.thresholds_mm_h == THRESHOLDS and ens.members.shape[0] == MEMBERS
    assert ens.members.shape[1:] == served.precip.shape == ens.mean.shape
    p = ens.probability
    finite = np.isfinite(p)
    assert finite.any() and np.all((p[finite] >= 0) & (p[finite] <= 1))
    assert np.all(np.diff(np.where(finite, p, 0), axis=0) <= 0)  # monotone in the threshold
    valid = np.isfinite(ens.members)
    with np.errstate(invalid="ignore"):
        share = np.stack([(ens.members >= t).sum(axis=0) / valid.sum(axis=0) for t in THRESHOLDS])
    np.testing.assert_array_equal(p, share.astype(np.float32))
    # the members differ from one another, and the newest input's no-data stays no data
    assert np.std(ens.members[:, valid.all(axis=0)], axis=0).max() > 0
    assert np.all(np.isnan(ens.members[:, :, served.input_nan_mask]))
    assert 0.0 < np.nanmean(p[1]) < 1.0  # at 1 mm/h the members disagree somewhere
