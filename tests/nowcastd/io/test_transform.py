"""DataTransform: the dBZ-like scaling, both directions, numpy and JAX, JSON round trip."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nowcastd.io.transform import DataTransform

DBZ = DataTransform(kind="dbz")
IDENTITY = DataTransform(kind="identity")
RATE_AT_1 = (10**6 / 200.0) ** (1 / 1.6)  # 60 dBZ ≈ 205 mm/h
RATE_AT_0 = (1 / 200.0) ** (1 / 1.6)  # 0 dBZ ≈ 0.037 mm/h


def test_dbz_maps_known_rates():
    r = np.array([0.0, -1.0, 0.01, RATE_AT_0 * 0.999, 1.0, RATE_AT_1, 1000.0, np.nan])
    x = DBZ.to_model(r)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[:4], 0.0)
    np.testing.assert_allclose(x[4], 10 * math.log10(200) / 60, rtol=1e-6)
    np.testing.assert_allclose(x[5:7], 1.0, rtol=1e-6)
    assert np.isnan(x[7])


def test_dbz_inverse_maps_known_values():
    x = np.array([0.0, -0.5, 1.0, 10 * math.log10(200) / 60, np.nan])
    r = DBZ.to_physical(x)
    np.testing.assert_allclose(r[:2], 0.0)
    np.testing.assert_allclose(r[2], RATE_AT_1, rtol=1e-5)
    np.testing.assert_allclose(r[3], 1.0, rtol=1e-5)
    assert np.isnan(r[4])


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 40), elements=st.floats(RATE_AT_0 * 1.01, RATE_AT_1)))
def test_dbz_roundtrip_rate_model_rate(r):
    back = DBZ.to_physical(DBZ.to_model(r))
    np.testing.assert_allclose(back, r, rtol=2e-5)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 40), elements=st.floats(0.0, 1.0, width=32)))
def test_dbz_roundtrip_model_rate_model(x):
    np.testing.assert_allclose(DBZ.to_model(DBZ.to_physical(x)), x, atol=2e-6)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, 30, elements=st.floats(-5.0, 500.0)))
def test_dbz_to_model_is_monotone_and_in_unit_interval(r):
    x = DBZ.to_model(np.sort(r))
    assert np.all((x >= 0) & (x <= 1))
    assert np.all(np.diff(x) >= 0)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, (3, 4), elements=st.floats(-2.0, 2.0, width=32)))
def test_identity_is_unchanged_both_ways(x):
    np.testing.assert_array_equal(IDENTITY.to_model(x), x)
    np.testing.assert_array_equal(IDENTITY.to_physical(x), x)


def test_jax_arrays_match_numpy_and_jit_and_grad_are_finite():
    r = np.array([0.0, 0.02, 0.12, 1.0, 5.0, 50.0, 300.0], np.float32)
    xj = DBZ.to_model(jnp.asarray(r))
    assert isinstance(xj, jax.Array) and xj.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(xj), DBZ.to_model(r), atol=1e-6)
    xs = jax.jit(DBZ.to_model)(jnp.asarray(r))
    np.testing.assert_allclose(np.asarray(xs), DBZ.to_model(r), atol=1e-6)
    rj = jax.jit(DBZ.to_physical)(xs)
    np.testing.assert_allclose(np.asarray(rj), DBZ.to_physical(np.asarray(xs)), rtol=1e-5)
    g = jax.grad(lambda x: DBZ.to_physical(x).sum())(jnp.array([0.0, 0.3, 0.7]))
    assert np.all(np.isfinite(np.asarray(g)))
    g = jax.grad(lambda r: DBZ.to_model(r).sum())(jnp.array([0.0, 1.0, 10.0]))
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("t", [IDENTITY, DBZ, DataTransform(kind="dbz", zr_a=300.0, zr_b=1.5)])
def test_json_roundtrip_restores_equal_transform(t):
    d = json.loads(json.dumps(t.to_json()))
    assert DataTransform.from_json(d) == t


def test_description_properties():
    assert DBZ.is_physical and DBZ.units == "mm/h"
    assert not IDENTITY.is_physical and IDENTITY.units == "1"
    assert hash(DBZ) == hash(DataTransform(kind="dbz"))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"kind": "log"}, "kind"),
        ({"kind": "dbz", "zr_a": 0.0}, "zr_a"),
        ({"kind": "dbz", "dbz_max": float("nan")}, "dbz_max"),
        ({"zr_b": True}, "zr_b"),
    ],
)
def test_invalid_fields_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DataTransform(**kwargs)


def test_from_json_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys"):
        DataTransform.from_json({"kind": "identity", "zr_a": 3.0})
    with pytest.raises(ValueError, match="kind"):
        DataTransform.from_json({"zr_a": 3.0})
