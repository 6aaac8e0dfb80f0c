"""Ahead-of-time compiled inference, and the pre-encoding of the next window in idle time.

A forecast from frames f_1..f_I re-encodes them from zero state: I + K - 1 network steps for
K leads. While the service waits for f_{I+1}, the next window's first I - 1 frames (f_2..f_I)
are already known, so `pre_encode` runs them through the network then. When the scan lands,
`forecast` only runs the step that consumes it and the K - 1 feedback steps: K of I + K - 1
steps on the critical path. The result equals the full rollout to float tolerance.

Pre-encoding lives here only: the encoded state, which window it belongs to, and the
background thread that computes it (`pre_encode(..., background=True)`). XLA cannot abandon
a running computation, and finishing the encode is always cheaper than the full re-encoding a
forecast without it needs, so `wait_pre_encode` (called by whoever is about to donate the
context array the encode reads) waits for it and re-raises what it raised.

Everything is compiled ahead of time for the operational shape by `compile()` (before the
service reports ready); a call with any other shape is an error, never a silent recompilation.
Each of the three programs (the forecast from a pre-encoded state, the full rollout, the encode)
runs under its own strategy (`model.strategy`), both its parts applied by
`model.compile.compile_program`: with `strategy="auto"` the candidates are compiled and timed
there and then, within `strategy_budget_seconds` for the three together, unless
`strategy_cache` holds this machine's choice (`nowcastd.strategy`). The rollouts end in
`DataTransform.to_rates` on the device, and `forecast` hands the executable it picked to
`nowcastd.nowcast.forecast_rates`, the forecast function evaluate uses too (clipping and no-data
rule included).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from model.compile import compile_program
from model.network import Carry, PredRNN
from model.rollout import encode, forecast_from
from model.strategy import DEFAULT, Strategy
from nowcastd.data.motion import MotionEstimator
from nowcastd.io.transform import DataTransform
from nowcastd.nowcast import Rollout, StageTimer, Window, forecast_rates, rollout_rates
from nowcastd.strategy.cache import StrategyCache
from nowcastd.strategy.search import Budget, Choice, Program, StrategySetting, choose

__all__ = ["Forecaster", "enable_compile_cache"]

logger = logging.getLogger(__name__)

#: Seconds the daemon's first start may spend timing the candidate strategies of its three
#: programs, beyond compiling and warming up their defaults (later starts read the cache).
STRATEGY_BUDGET_SECONDS = 6.0

# The compiled programs. Their first argument is the network's arrays (`eqx.partition`).
#: (params, context, motion or None) -> (1, K, H, W) mm/h: the full rollout.
_Full = Callable[[PredRNN, jax.Array | np.ndarray, np.ndarray | None], jax.Array]
#: (params, context) -> the carry after the newest I - 1 frames.
_Encode = Callable[[PredRNN, jax.Array | np.ndarray], Carry]
#: (params, carry, context) -> (1, K, H, W) mm/h from the pre-encoded carry.
_From = Callable[[PredRNN, Carry, jax.Array | np.ndarray], jax.Array]


def enable_compile_cache(directory: str | os.PathLike[str]) -> None:
    """Use JAX's persistent compilation cache in `directory` (every compilation is cached)."""
    # jax leaves Config.update unannotated
    jax.config.update("jax_compilation_cache_dir", str(directory))  # type: ignore[no-untyped-call]
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # type: ignore[no-untyped-call]
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)  # type: ignore[no-untyped-call]
    logger.info("JAX compilation cache in %s", directory)


@dataclass(frozen=True)
class _PreEncoded:
    carry: Carry
    key: tuple[Hashable, ...]  # identities of the I - 1 frames it encodes, oldest first


class Forecaster:
    """Compiled full rollout, encode and forecast_from for one (H, W, C) grid and K leads.

    `time_encode`, if given, is a context manager factory timing each pre-encoding (e.g.
    `lambda: metrics.time_stage("encode")`); it runs on the thread that encodes.
    `strategy`: "auto" (measure, or read `strategy_cache`) or the strategy of every program;
    `strategies` holds what `compile` chose for each. `margin`: the halo of a Lagrangian
    network's frames, in pixels on every side of `grid` (`nowcastd.nowcast`; others take none).
    """

    def __init__(
        self,
        network: PredRNN,
        transform: DataTransform,
        *,
        num_leads: int,
        grid: tuple[int, int] | None = None,
        time_encode: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
        motion_method: str = "LK",
        strategy: StrategySetting = DEFAULT,
        strategy_cache: StrategyCache | None = None,
        strategy_budget_seconds: float = STRATEGY_BUDGET_SECONDS,
        margin: int = 0,
    ) -> None:
        cfg = network.cfg
        if num_leads < 1:
            raise ValueError(f"num_leads: expected >= 1, got {num_leads}")
        self.network = network
        self.transform = transform
        self.num_leads = num_leads
        self.input_length = cfg.input_length
        h, w = grid or (cfg.img_height, cfg.img_width)
        self.margin = margin if cfg.lagrangian else 0
        self.frame_shape = (h + 2 * self.margin, w + 2 * self.margin, cfg.img_channel)
        # a Lagrangian network takes each window's motion, estimated on the host (each frame
        # pair tracked once: consecutive windows share all pairs but the newest)
        self.motion = MotionEstimator(motion_method, reuse_pairs=True) if cfg.lagrangian else None
        self._params, self._static = eqx.partition(network, eqx.is_array)
        self._time_encode = time_encode or contextlib.nullcontext
        self._full: _Full | None = None
        self._encode: _Encode | None = None
        self._from: _From | None = None
        self._pre: _PreEncoded | None = None
        self._pre_encoding = True
        self._thread: threading.Thread | None = None
        self._thread_error: Exception | None = None
        self.compile_seconds = 0.0
        self._strategy = strategy
        self._strategy_cache = strategy_cache
        self._strategy_budget = strategy_budget_seconds
        self.strategies: dict[str, Choice[Strategy]] = {}

    @property
    def can_pre_encode(self) -> bool:
        """Whether the newest I - 1 frames can be encoded before the next scan: not for a
        Lagrangian network, whose frame of reference moves with every scan."""
        return self.input_length >= 2 and self._pre_encoding and self.motion is None

    # -- the functions compiled --------------------------------------------------------------

    def _net(self, params: PredRNN) -> PredRNN:
        network: PredRNN = eqx.combine(params, self._static)
        return network

    def _full_fn(
        self, params: PredRNN, context: jax.Array, motion: jax.Array | None, *, strategy: Strategy
    ) -> jax.Array:
        network = self._net(params)
        return rollout_rates(
            network,
            self.transform,
            context,
            self.num_leads,
            motion,
            strategy=strategy,
            margin=self.margin,
        )

    def _encode_fn(self, params: PredRNN, context: jax.Array, *, strategy: Strategy) -> Carry:
        carry, _ = encode(self._net(params), context[:, 1:], strategy=strategy)
        return carry

    def _from_fn(
        self, params: PredRNN, carry: Carry, context: jax.Array, *, strategy: Strategy
    ) -> jax.Array:
        net = self._net(params)
        preds = forecast_from(net, carry, context[:, -1], self.num_leads, strategy=strategy)
        return self.transform.to_rates(preds[..., 0])

    def _compiled(
        self, name: str, fn: Callable[..., object], args: tuple[object, ...], budget: Budget
    ) -> Callable[..., Any]:
        """`fn(params, *args, strategy=...)` compiled for `args` under the strategy chosen for
        program `name` (`model.compile`; timed on the weights and zeros when measured)."""
        compiled: dict[Strategy, Callable[..., Any]] = {}
        params, *rest = args
        zeros = (params, *jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), rest))

        def compile_one(strategy: Strategy) -> Callable[..., Any]:
            return compile_program(fn, strategy, inference=True, example_args=args)

        def build(strategy: Strategy) -> Callable[[], object]:
            compiled[strategy] = exe = compile_one(strategy)
            return lambda: exe(*zeros)

        i, (h, w, c) = self.input_length, self.frame_shape
        program = Program(
            name=f"serve {name}",
            shapes=f"1x{i}x{h}x{w}x{c} float32, {self.num_leads} leads",
            cfg=self.network.cfg,
            batch=1,
            inference=True,
        )
        choice = choose(
            program, build, setting=self._strategy, cache=self._strategy_cache, budget=budget
        )
        self.strategies[name] = choice
        return compiled.pop(choice.strategy, None) or compile_one(choice.strategy)

    def compile(self, *, pre_encoding: bool = True) -> float:
        """Compile the functions for the operational shape; returns the seconds it took.

        `pre_encoding=False` compiles the full rollout only (one-off forecasts).
        """
        start = time.perf_counter()
        self._pre_encoding = pre_encoding
        i, shape = self.input_length, self.frame_shape
        # jax leaves ShapeDtypeStruct's constructor unannotated
        spec = jax.ShapeDtypeStruct
        context = spec((1, i, *shape), jnp.float32)  # type: ignore[no-untyped-call]
        motion = None
        if self.motion is not None:
            motion = spec((1, *shape[:2], 2), jnp.float32)  # type: ignore[no-untyped-call]
        params = self._params
        # the critical path's program first
        programs: list[tuple[str, Callable[..., object], tuple[object, ...]]] = []
        if pre_encoding and self.can_pre_encode:
            encode_default = functools.partial(self._encode_fn, strategy=DEFAULT)
            carry = jax.eval_shape(encode_default, params, context)
            programs.append(("forecast", self._from_fn, (params, carry, context)))
        programs.append(("rollout", self._full_fn, (params, context, motion)))
        if pre_encoding and self.can_pre_encode:
            programs.append(("encode", self._encode_fn, (params, context)))
        end = start + self._strategy_budget
        compiled: dict[str, Callable[..., Any]] = {}
        for done, (name, fn, args) in enumerate(programs):
            # each program gets an equal share of what is left of the budget
            share = max(0.0, end - time.perf_counter()) / (len(programs) - done)
            compiled[name] = self._compiled(name, fn, args, Budget(share))
        self._from, self._full = compiled.get("forecast"), compiled["rollout"]
        self._encode = compiled.get("encode")
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

    def _warm_up(self, spec: jax.ShapeDtypeStruct) -> None:
        """Run each executable once: the first call of an XLA executable is slower."""
        zeros = jax.device_put(np.zeros(spec.shape, np.float32))
        still = None if self.motion is None else np.zeros((1, *spec.shape[2:4], 2), np.float32)
        self.full(zeros, still)
        if self.motion is not None:  # the optical flow's first call is slower too (OpenCV)
            rain = np.random.default_rng(0).gamma(0.6, 3.0, spec.shape[1:4])
            self.motion(rain)
        if self.can_pre_encode:
            encode, from_carry = self._pre_encoding_programs()
            carry = encode(self._params, zeros)
            from_carry(self._params, carry, zeros).block_until_ready()

    def _check_compiled(self) -> _Full:
        """The full rollout; RuntimeError before `compile`."""
        if self._full is None:
            raise RuntimeError("Forecaster.compile() must run before forecasting")
        return self._full

    def _pre_encoding_programs(self) -> tuple[_Encode, _From]:
        """The encode and the forecast from its carry; RuntimeError unless compiled."""
        if self._encode is None or self._from is None:
            raise RuntimeError("Forecaster.compile(pre_encoding=True) must run before encoding")
        return self._encode, self._from

    # -- use ---------------------------------------------------------------------------------

    def full(self, context: jax.Array | np.ndarray, motion: np.ndarray | None = None) -> np.ndarray:
        """(1, K, H, W) mm/h from a `(1, I, H, W, C)` context (and its (1, H, W, 2) motion for
        a Lagrangian network): the full rollout, no NaN rule."""
        full = self._check_compiled()
        return np.asarray(full(self._params, context, motion))

    def pre_encode(
        self, context: jax.Array, key: Sequence[Hashable], *, background: bool = False
    ) -> None:
        """Encode the newest I - 1 frames of a `(1, I, H, W, C)` context for the next window.

        `key` names the I frames of `context`, oldest first; `forecast` uses the result only
        when the window it is given starts with exactly the newest I - 1 of them.
        `background=True` returns at once; the encode runs on a thread until
        `wait_pre_encode`, and `context` must not be donated before that.
        """
        self._check_compiled()
        self.wait_pre_encode()
        if not self.can_pre_encode:
            return
        newest = tuple(key)[1:]
        if not background:
            self._encode_now(context, newest)
            return
        self._thread = threading.Thread(
            target=self._encode_in_background,
            args=(context, newest),
            name="pre-encode",
            daemon=True,
        )
        self._thread.start()

    def _encode_now(self, context: jax.Array, key: tuple[Hashable, ...]) -> None:
        encode, _ = self._pre_encoding_programs()
        with self._time_encode():
            carry = encode(self._params, context)
            # jax leaves `block_until_ready` unannotated (it takes and returns any pytree)
            jax.block_until_ready(carry)  # type: ignore[no-untyped-call]
        self._pre = _PreEncoded(carry=carry, key=key)

    def _encode_in_background(self, context: jax.Array, key: tuple[Hashable, ...]) -> None:
        try:
            self._encode_now(context, key)
        except Exception as e:  # re-raised on the caller's thread by wait_pre_encode
            self._thread_error = e

    def wait_pre_encode(self) -> float:
        """Wait for a background pre-encoding, raise what it raised; returns seconds waited."""
        thread, self._thread = self._thread, None
        if thread is None:
            return 0.0
        start = time.perf_counter()
        thread.join()
        waited = time.perf_counter() - start
        error, self._thread_error = self._thread_error, None
        if error is not None:
            raise error
        return waited

    def pre_encoded_for(self, key: Sequence[Hashable]) -> bool:
        return self._pre is not None and self._pre.key == tuple(key)

    def forecast(
        self,
        window: Window,
        key: Sequence[Hashable],
        *,
        timed: StageTimer | None = None,
        flow: np.ndarray | None = None,
    ) -> tuple[np.ndarray, bool]:
        """(1, K, H, W) forecast in mm/h (`forecast_rates`, its stages timed by `timed`) and
        whether the pre-encoded state was used.

        `key` names the I frames of `window`, oldest first. With a matching pre-encoding only
        `forecast_from` runs; otherwise the full rollout. A background pre-encoding still
        running is waited for (`Pipeline` waits for it before it donates the buffer).
        `flow`: the window's motion if already estimated (the ensemble shares it).
        """
        full = self._check_compiled()
        self.wait_pre_encode()
        pre = self._pre if self.can_pre_encode and self.pre_encoded_for(tuple(key)[:-1]) else None
        run: Rollout
        if pre is not None:
            _, from_carry = self._pre_encoding_programs()
            self._pre = None

            def run(context: jax.Array | np.ndarray, motion: np.ndarray | None) -> jax.Array:
                del motion  # pre-encoding is for Eulerian networks only
                return from_carry(self._params, pre.carry, context)
        else:
            run = functools.partial(full, self._params)
        if timed is None:
            rates = forecast_rates(window, run, motion=self.motion, flow=flow)
        else:
            rates = forecast_rates(window, run, motion=self.motion, timed=timed, flow=flow)
        return rates, pre is not None
