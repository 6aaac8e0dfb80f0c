"""Ahead-of-time compiled inference, with pre-encoding of the next window in idle time.

A forecast from frames f_1..f_I re-encodes them from zero state: I + K - 1 network steps for
K leads. While the service waits for f_{I+1}, the next window's first I - 1 frames (f_2..f_I)
are already known, so `pre_encode` runs them through the network then. When the scan lands,
`forecast` only runs the step that consumes it and the K - 1 feedback steps: K of I + K - 1
steps on the critical path. The result equals the full rollout to float tolerance.

Everything is compiled for the operational shape by `compile()` (before the service reports
ready) with `jax.jit(...).lower(...).compile()`; a call with any other shape is an error, never
a silent recompilation. Outputs come back in physical units (the data transform runs on the
device) as a host numpy array.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from model.network import PredRNN
from model.rollout import encode, forecast_from, rollout
from nowcastd.io.transform import DataTransform

__all__ = ["Forecaster", "enable_compile_cache"]

logger = logging.getLogger(__name__)


def enable_compile_cache(directory) -> None:
    """Use JAX's persistent compilation cache in `directory` (every compilation is cached)."""
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    logger.info("JAX compilation cache in %s", directory)


@dataclass(frozen=True)
class _PreEncoded:
    carry: Any
    key: tuple  # identities of the I - 1 frames it encodes, oldest first


class Forecaster:
    """Compiled full rollout, encode and forecast_from for one (H, W, C) grid and K leads."""

    def __init__(self, network: PredRNN, transform: DataTransform, *, num_leads: int) -> None:
        cfg = network.cfg
        if num_leads < 1:
            raise ValueError(f"num_leads: expected >= 1, got {num_leads}")
        self.network = network
        self.transform = transform
        self.num_leads = num_leads
        self.input_length = cfg.input_length
        self.frame_shape = (cfg.img_height, cfg.img_width, cfg.img_channel)
        self._params, self._static = eqx.partition(network, eqx.is_array)
        self._full = None
        self._encode = None
        self._from = None
        self._pre: _PreEncoded | None = None
        self._pre_encoding = True
        self.compile_seconds = 0.0

    @property
    def can_pre_encode(self) -> bool:
        return self.input_length >= 2 and self._pre_encoding

    # -- the functions compiled --------------------------------------------------------------

    def _net(self, params) -> PredRNN:
        return eqx.combine(params, self._static)

    def _physical(self, preds):
        return jnp.nan_to_num(self.transform.to_physical(preds[0, ..., 0]), nan=0.0)

    def _full_fn(self, params, context):
        return self._physical(rollout(self._net(params), context, self.num_leads))

    def _encode_fn(self, params, context):
        carry, _ = encode(self._net(params), context[:, 1:])
        return carry

    def _from_fn(self, params, carry, context):
        net = self._net(params)
        return self._physical(forecast_from(net, carry, context[:, -1], self.num_leads))

    def compile(self, *, pre_encoding: bool = True) -> float:
        """Compile the functions for the operational shape; returns the seconds it took.

        `pre_encoding=False` compiles the full rollout only (one-off forecasts).
        """
        start = time.perf_counter()
        self._pre_encoding = pre_encoding
        i, shape = self.input_length, self.frame_shape
        spec = jax.ShapeDtypeStruct
        context = spec((1, i, *shape), jnp.float32)
        self._full = jax.jit(self._full_fn).lower(self._params, context).compile()
        if pre_encoding and self.can_pre_encode:
            self._encode = jax.jit(self._encode_fn).lower(self._params, context).compile()
            carry = jax.eval_shape(self._encode_fn, self._params, context)
            self._from = jax.jit(self._from_fn).lower(self._params, carry, context).compile()
        self._warm_up(context)
        self.compile_seconds = time.perf_counter() - start
        logger.info(
            "compiled rollout for %s frames of %s, %d leads, in %.1f s",
            i,
            shape,
            self.num_leads,
            self.compile_seconds,
        )
        return self.compile_seconds

    def _warm_up(self, spec) -> None:
        """Run each executable once: the first call of an XLA executable is slower."""
        zeros = jax.device_put(np.zeros(spec.shape, np.float32))
        self.full(zeros)
        if self.can_pre_encode:
            self.pre_encode(zeros, range(self.input_length))
            self.forecast(zeros, range(1, self.input_length + 1))

    def _check_compiled(self) -> None:
        if self._full is None:
            raise RuntimeError("Forecaster.compile() must run before forecasting")

    # -- use ---------------------------------------------------------------------------------

    def full(self, context) -> np.ndarray:
        """(K, H, W) physical forecast from a `(1, I, H, W, C)` context: the full rollout."""
        self._check_compiled()
        return np.asarray(self._full(self._params, context))

    def pre_encode(self, context, key: Sequence) -> None:
        """Encode the newest I - 1 frames of a `(1, I, H, W, C)` context for the next window.

        `key` names the I frames of `context`, oldest first; `forecast` uses the result only
        when the window it is given starts with exactly the newest I - 1 of them.
        """
        self._check_compiled()
        if not self.can_pre_encode:
            return
        carry = self._encode(self._params, context)
        jax.block_until_ready(carry)
        self._pre = _PreEncoded(carry=carry, key=tuple(key)[1:])

    def invalidate(self) -> None:
        self._pre = None

    def pre_encoded_for(self, key: Sequence) -> bool:
        return self._pre is not None and self._pre.key == tuple(key)

    def forecast(self, context, key: Sequence) -> tuple[np.ndarray, bool]:
        """(K, H, W) physical forecast and whether the pre-encoded state was used.

        `key` names the I frames of `context`, oldest first. With a matching pre-encoding
        only `forecast_from` runs; otherwise the full rollout.
        """
        self._check_compiled()
        key = tuple(key)
        if self.can_pre_encode and self.pre_encoded_for(key[:-1]):
            carry = self._pre.carry
            self._pre = None
            return np.asarray(self._from(self._params, carry, context)), True
        return self.full(context), False
