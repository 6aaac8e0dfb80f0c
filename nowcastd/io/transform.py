"""The declared transform between physical units and the model's units.

Every data set and every checkpoint carries one `DataTransform`, so a forecast in model units can
always be turned back into a physical quantity (`to_physical`) and new observations into model
inputs (`to_model`) the same way the training data were made.

Two kinds exist:

* ``identity``: the data are already in model units (Moving-MNIST-style clips, the seed's
  ``.npy`` files); nothing is physical.
* ``dbz``: rain rate R in mm/h <-> a dBZ-like value in [0, 1]:
  ``x = clip(10·log10(a·R^b) / dbz_max, 0, 1)`` with x = 0 for R <= 0, and the inverse
  ``R = (10^(dbz_max/10 · x) / a)^(1/b)`` for x > 0, R = 0 for x <= 0 (Marshall-Palmer by
  default: a = 200, b = 1.6, dbz_max = 60, so 1 ≈ 205 mm/h and rates below ≈ 0.037 mm/h map to 0).
  This is the scaling of the radar development set (`rate_to_unit` / `unit_to_rate` in
  ``make_dev_set.py``).

NaN stays NaN in both directions. The two rules of a forecast live here, once: `to_model_input`
(inputs: no data enters the model as 0 in model units) and `to_rates` (outputs: clipped to the
model's [0, 1] range, then physical, never NaN). Serve, evaluate and the data sources all call
them (`nowcastd.nowcast`).

Both directions accept numpy arrays (returning float32, computed in float64 like the development
set script) and JAX arrays, including tracers under `jax.jit` (returning the input's float dtype).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias, overload

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import jax

KINDS = ("identity", "dbz")

# What the NumPy side accepts: arrays, NumPy and Python scalars, sequences of numbers.
NumpyIn: TypeAlias = npt.NDArray[Any] | float | Sequence[float]
Float32Array: TypeAlias = npt.NDArray[np.float32]


def _is_jax(x: object) -> bool:
    return type(x).__module__.split(".")[0] in ("jax", "jaxlib")


def _namespace(x: object) -> ModuleType:
    """numpy for numpy input (and Python scalars/lists), jax.numpy for JAX arrays and tracers."""
    if _is_jax(x):
        import jax.numpy as jnp

        return jnp
    return np


def _as_float(x: NumpyIn | jax.Array) -> tuple[ModuleType, npt.NDArray[Any] | jax.Array]:
    """(namespace, array): numpy input as float64, JAX input as its own float dtype."""
    xp = _namespace(x)
    if xp is np:
        return np, np.asarray(x, dtype=np.float64)
    arr = xp.asarray(x)
    if not xp.issubdtype(arr.dtype, xp.floating):
        arr = arr.astype(xp.float32)
    return xp, arr


@dataclass(frozen=True, kw_only=True)
class DataTransform:
    """A declared, serialisable mapping physical units <-> model units.

    Attributes:
        kind: ``"identity"`` or ``"dbz"``.
        zr_a, zr_b: the Z-R relation Z = a·R^b of the ``dbz`` kind (ignored by ``identity``).
        dbz_max: the dBZ value that maps to 1 (``dbz`` only).
    """

    kind: str = "identity"
    zr_a: float = 200.0
    zr_b: float = 1.6
    dbz_max: float = 60.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"DataTransform.kind: got {self.kind!r}, expected one of {KINDS}")
        for name in ("zr_a", "zr_b", "dbz_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"DataTransform.{name}: expected a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"DataTransform.{name}: expected a finite number > 0, got {value}")

    # -- description -------------------------------------------------------------------------

    @property
    def is_physical(self) -> bool:
        """True when `to_physical` gives a physical quantity (rain rate in mm/h for ``dbz``)."""
        return self.kind == "dbz"

    @property
    def units(self) -> str:
        """Units of the physical side (CF style; ``"1"`` = dimensionless for ``identity``)."""
        return "mm/h" if self.kind == "dbz" else "1"

    @property
    def model_units(self) -> str:
        """Units of the model side: always dimensionless."""
        return "1"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; `from_json` restores an equal transform."""
        if self.kind == "identity":
            return {"kind": "identity"}
        return {
            "kind": "dbz",
            "zr_a": float(self.zr_a),
            "zr_b": float(self.zr_b),
            "dbz_max": float(self.dbz_max),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DataTransform:
        """Inverse of `to_json`; raises ValueError naming unknown or missing keys."""
        if not isinstance(d, dict) or "kind" not in d:
            raise ValueError(f"DataTransform.from_json: expected a dict with 'kind', got {d!r}")
        allowed = {"kind"} if d["kind"] == "identity" else {"kind", "zr_a", "zr_b", "dbz_max"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(
                f"DataTransform.from_json: unknown keys {unknown} for kind {d['kind']!r}, "
                f"allowed {sorted(allowed)}"
            )
        return cls(**d)

    # -- the mapping -------------------------------------------------------------------------

    @overload
    def to_model(self, x_phys: jax.Array) -> jax.Array: ...
    @overload
    def to_model(self, x_phys: NumpyIn) -> Float32Array: ...
    def to_model(self, x_phys: NumpyIn | jax.Array) -> Float32Array | jax.Array:
        """Physical values -> model units (NaN stays NaN)."""
        xp, r = _as_float(x_phys)
        if self.kind == "identity":
            return r.astype(np.float32) if xp is np else r
        wet = r > 0  # False for NaN
        safe = xp.where(wet, r, 1.0)
        with np.errstate(divide="ignore", over="ignore"):  # tiny or huge R: clipped below
            dbz = 10.0 * xp.log10(self.zr_a * safe**self.zr_b)
        x = xp.where(wet, xp.clip(dbz / self.dbz_max, 0.0, 1.0), 0.0)
        model: npt.NDArray[Any] | jax.Array = xp.where(xp.isnan(r), xp.nan, x)
        return model.astype(np.float32) if xp is np else model.astype(r.dtype)

    @overload
    def to_physical(self, x_model: jax.Array) -> jax.Array: ...
    @overload
    def to_physical(self, x_model: NumpyIn) -> Float32Array: ...
    def to_physical(self, x_model: NumpyIn | jax.Array) -> Float32Array | jax.Array:
        """Model units -> physical values (NaN stays NaN)."""
        xp, x = _as_float(x_model)
        if self.kind == "identity":
            return x.astype(np.float32) if xp is np else x
        pos = x > 0
        safe = xp.where(pos, x, 0.0)
        with np.errstate(over="ignore"):
            r = (10.0 ** (self.dbz_max / 10.0 * safe) / self.zr_a) ** (1.0 / self.zr_b)
        r = xp.where(pos, r, 0.0)
        rates: npt.NDArray[Any] | jax.Array = xp.where(xp.isnan(x), xp.nan, r)
        return rates.astype(np.float32) if xp is np else rates.astype(x.dtype)

    @overload
    def to_model_input(self, x_phys: jax.Array) -> jax.Array: ...
    @overload
    def to_model_input(self, x_phys: NumpyIn) -> Float32Array: ...
    def to_model_input(self, x_phys: NumpyIn | jax.Array) -> Float32Array | jax.Array:
        """Physical values -> model inputs: model units, no data (NaN) as 0."""
        xp, _ = _as_float(x_phys)
        inputs: Float32Array | jax.Array = xp.nan_to_num(self.to_model(x_phys), nan=0.0)
        return inputs

    @overload
    def to_rates(self, x_model: jax.Array) -> jax.Array: ...
    @overload
    def to_rates(self, x_model: NumpyIn) -> Float32Array: ...
    def to_rates(self, x_model: NumpyIn | jax.Array) -> Float32Array | jax.Array:
        """Network output -> physical values, the one rule of every forecast: clipped to the
        model's [0, 1] first (what the network was trained to produce) and, for rain rates,
        anything below `RAIN_THRESHOLD_MM_H` is 0. NaN (no data: rain a Lagrangian network
        would advect in from outside the grid) stays NaN.

        The threshold matters: the dBZ scale maps every x > 0 to at least 0.036 mm/h, so a
        forecast a hair above 0 over dry land would rain 0.036 mm/h there; pysteps' dB
        extrapolation likewise reads rates below 0.1 mm/h as no rain."""
        xp, x = _as_float(x_model)
        r: Float32Array | jax.Array = self.to_physical(xp.clip(x, 0.0, 1.0))
        if self.kind == "identity":
            return r
        rained: Float32Array | jax.Array = xp.where(r < RAIN_THRESHOLD_MM_H, xp.zeros_like(r), r)
        return rained


RAIN_THRESHOLD_MM_H = 0.1

IDENTITY = DataTransform(kind="identity")
DBZ = DataTransform(kind="dbz")
