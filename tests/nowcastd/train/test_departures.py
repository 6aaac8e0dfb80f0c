"""The loss terms a run turns on, in model units: NowcastNet's weight from mm/h, nothing when off."""

import jax.numpy as jnp
import numpy as np
import pytest

from model.config import ModelConfig
from model.loss import OFFICIAL_LOSS
from model.objectives import intensity_weights
from nowcastd.io.transform import DBZ, IDENTITY
from nowcastd.train.config import TrainConfig
from nowcastd.train.departures import (
    INTENSITY_KNOTS_MMH,
    intensity_table,
    nowcastnet_weight,
    with_departures,
)


def _run(**fields) -> TrainConfig:
    return TrainConfig(model=ModelConfig(), train_data_paths=(), is_training=False, **fields)


def test_intensity_weight_in_model_units_is_nowcastnets_weight_of_the_rain_rate() -> None:
    knots, weights = intensity_table(DBZ)
    rates = np.concatenate([INTENSITY_KNOTS_MMH, np.geomspace(0.05, 200.0, 400)])
    got = np.asarray(intensity_weights(jnp.asarray(DBZ.to_model(rates)), knots, weights))
    want = np.minimum(24.0, 1.0 + rates)
    np.testing.assert_allclose(got[: len(INTENSITY_KNOTS_MMH)], want[: len(INTENSITY_KNOTS_MMH)])
    np.testing.assert_allclose(got, want, rtol=0.04)  # linear in model units between knots
    assert np.all(np.diff(got[len(INTENSITY_KNOTS_MMH) :]) >= 0)  # heavier rain, more weight
    np.testing.assert_allclose(nowcastnet_weight(np.array([0.0, 5.0, 50.0])), [1.0, 6.0, 24.0])


def test_an_identity_transform_reads_the_models_values_as_rates() -> None:
    knots, weights = intensity_table(IDENTITY)
    np.testing.assert_allclose(knots, INTENSITY_KNOTS_MMH, rtol=1e-6)
    assert weights[-1] == 24.0


def test_weights_of_zero_leave_the_objective_as_it_is_and_others_reach_it() -> None:
    assert with_departures(OFFICIAL_LOSS, _run(), DBZ) == OFFICIAL_LOSS
    loss = with_departures(
        OFFICIAL_LOSS,
        _run(fourier_amplitude_weight=0.5, fourier_correlation_weight=0.1, intensity_l1_weight=2.0),
        DBZ,
    )
    assert (loss.fourier_amplitude_weight, loss.fourier_correlation_weight) == (0.5, 0.1)
    assert loss.intensity_l1_weight == 2.0
    assert (loss.intensity_knots, loss.intensity_weights) == intensity_table(DBZ)


@pytest.mark.parametrize("name", ["fourier_amplitude_weight", "intensity_l1_weight"])
@pytest.mark.parametrize("value", [-1.0, float("inf")])
def test_a_negative_or_infinite_weight_is_refused_by_name(name, value) -> None:
    with pytest.raises(ValueError, match=f"{name}: expected a finite number >= 0, got {value}"):
        _run(**{name: value})
