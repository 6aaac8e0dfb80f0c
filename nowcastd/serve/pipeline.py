"""One owner per scan: `Pipeline.step(paths, now)` takes scans from their files to a forecast
file and returns one `Outcome` (`serve.outcome`) per scan.

The stages, in order, each a direct call in `step`: `read` (in a killable worker process with
`isolate_reads`; the read policy, the plausibility of the field (`serve.plausibility`), the
domain's crop and block mean, model units) → `_admit` (`future`, `stale` for the start-up
refill, `off_cadence`, then the buffer's ordering rules: `duplicate`, `out_of_order`) →
`_buffer_frame` (the transfer to the device; a gap empties the buffer) → `_forecast` (the
forecast, `nowcastd.nowcast.forecast_rates`, pre-encoded when possible; the atomic write;
retention with `retention=True`; the pre-encoding of the next window in the background).

`nowcastd serve` steps it once per batch of queued scans (read all, buffer in valid-time
order, forecast once from the newest), `refill` at start-up, `nowcastd predict` once. Every
stage runs inside `_guard(stage, path)`, the one place errors are caught: a refusal becomes
a `Rejected` outcome, an error the stage names a `Failed` one, and any other exception a stage
raises while it handles one scan is a bug met by that scan, and becomes its `Failed` outcome
(reason "internal", logged with the traceback), so no file can stop the daemon. Its state is
the input buffer (with each buffered `Frame`), the compiled forecaster (with its pre-encoded
window) and one `ServeConfig` reference, which `reconfigure` replaces whole; each step reads
it once.

NaN rule: pixels without data (NaN after the domain crop) enter the model as 0 in model units
(no rain). The forecast is NaN (no data) wherever the newest input scan had no data, and that
mask is written to the forecast file as `input_nan_mask`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jax
import numpy as np

from nowcastd.errors import ConfigError, NowcastdError, ScanError, UnknownFormatError
from nowcastd.io.domain import Domain
from nowcastd.io.forecast_file import compressor_pool, prune_forecasts, write_forecast
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.io.readers import ReadPolicy, Scan, ScanRefused, printable
from nowcastd.io.scan_settings import ReaderConfig
from nowcastd.nowcast import Window
from nowcastd.serve.buffer import FrameBuffer, Push
from nowcastd.serve.config import ServeConfig
from nowcastd.serve.ensemble_stage import EnsembleStage
from nowcastd.serve.forecast import Forecast, Frame, timings
from nowcastd.serve.forecaster import Forecaster
from nowcastd.serve.labels import FailureReason, RejectReason, Stage, member
from nowcastd.serve.metrics import ServiceMetrics
from nowcastd.serve.outcome import Buffered, Failed, Outcome, Rejected, Written
from nowcastd.serve.plausibility import FieldRules, admit_field
from nowcastd.serve.read_worker import ReadWorker
from nowcastd.settings import strategy_cache_dir
from nowcastd.strategy.cache import StrategyCache

__all__ = ["Pipeline", "PipelineStatus"]

logger = logging.getLogger(__name__)

#: ServeConfig keys the pipeline is built from; changing them needs a new pipeline.
FIXED_KEYS = (
    "checkpoint",
    "domain",
    "lead_frames",
    "timestep_seconds",
    "max_gap_seconds",
    "strategy",
    "ensemble_members",
    "ensemble_design",
    "ensemble_noise_gain",
    "ensemble_seed",
)
#: The start-up refill reads at most this many times the buffer's capacity of files.
REFILL_TRIES = 8

#: The path the outcome of waiting for the background pre-encoding names.
_NEXT_WINDOW = Path("the next window")


@dataclass(frozen=True, kw_only=True)
class PipelineStatus:
    """A snapshot of the input buffer."""

    frames: int
    capacity: int
    newest_time: datetime | None

    @property
    def full(self) -> bool:
        """Whether a forecast can be made."""
        return self.frames == self.capacity


@dataclass
class _Lap:
    seconds: float = 0.0


@dataclass
class _Guarded:
    """What a `_guard` block came to: `failure` is the file's outcome when the block raised."""

    failure: Rejected | Failed | None = None

    @property
    def failed(self) -> tuple[Failed, ...]:
        """The failure as housekeeping (work done for the scans, not by one): a `Failed`."""
        return (self.failure,) if isinstance(self.failure, Failed) else ()


@contextlib.contextmanager
def _guard(stage: Stage, path: Path) -> Iterator[_Guarded]:
    """The one place errors are caught: what the block, `stage` handling the file at `path`,
    raises becomes that file's outcome (`_Guarded.failure`) and never the daemon's end. A
    refusal is `Rejected` with its reason; an error the stage names (NowcastdError, OSError)
    is `Failed`; any other exception (a refusal with a reason no metric knows too) is
    `Failed` with reason "internal", logged with its traceback."""
    guarded = _Guarded()
    try:
        yield guarded
    except ScanRefused as e:
        guarded.failure = _refused(stage, path, e)
    except (NowcastdError, OSError) as e:
        guarded.failure = Failed(path=path, stage=stage, detail=str(e))
    except Exception as e:
        guarded.failure = _internal(stage, path, e)


def _read_scan(
    path: Path, reader: ReaderConfig, policy: ReadPolicy, worker: ReadWorker | None
) -> Scan:
    """`read_scan` with the reader settings, in `worker` if given; a refused file raises
    ScanRefused with its reason."""
    try:
        if worker is not None:
            return worker.read(path, reader, policy)
        return reader.read(path, policy=policy)
    except ScanRefused:
        raise
    except UnknownFormatError as e:
        raise ScanRefused(RejectReason.UNKNOWN_FORMAT, str(e)) from e
    except ScanError as e:
        raise ScanRefused(RejectReason.CORRUPT, str(e)) from e
    except MemoryError as e:
        raise ScanRefused(
            RejectReason.TOO_LARGE, f"{printable(path.name)}: too large to read"
        ) from e


class Pipeline:
    """The model, its domain, the device buffer and the compiled forecaster."""

    def __init__(
        self,
        cfg: ServeConfig,
        model: LoadedModel,
        *,
        metrics: ServiceMetrics | None = None,
        isolate_reads: bool = False,
        retention: bool = False,
    ) -> None:
        mcfg = model.cfg
        self.domain = cfg.domain or Domain.full((mcfg.img_height, mcfg.img_width))
        shape = self.domain.model_shape
        model.check_grid(shape, "[domain]")
        self._cfg = cfg
        self._field_rules = FieldRules.of(cfg, model.transform)
        self.model = model
        self.metrics = metrics
        self.retention = retention
        self.num_leads = cfg.lead_frames or (mcfg.total_length - mcfg.input_length)
        time_encode = None if metrics is None else (lambda: metrics.time_stage(Stage.ENCODE))
        # a Lagrangian network reads a halo of the scan around the grid (`Domain.halo`)
        margin = self.domain.halo if mcfg.lagrangian else 0
        self._frames_domain = self.domain.with_halo() if margin else self.domain
        self._forecaster = Forecaster(
            model.network,
            model.transform,
            num_leads=self.num_leads,
            grid=shape,
            time_encode=time_encode,
            motion_method=model.motion_method,
            strategy=cfg.strategy,
            strategy_cache=StrategyCache(strategy_cache_dir(os.environ, cfg.compile_cache_dir)),
            margin=margin,
        )
        self._ensemble = self._ensemble_stage(cfg, model, shape, margin)
        self._read_worker = (
            ReadWorker(
                timeout_seconds=cfg.read_timeout_seconds,
                memory_limit_bytes=cfg.read_memory_limit_bytes,
            )
            if isolate_reads
            else None
        )
        self._buffer: FrameBuffer[Frame] = FrameBuffer(
            input_length=mcfg.input_length,
            frame_shape=self._forecaster.frame_shape,
            max_gap_seconds=cfg.gap_seconds,
        )
        self._compressor = compressor_pool()  # its threads start with the first forecast

    def _ensemble_stage(
        self, cfg: ServeConfig, model: LoadedModel, grid: tuple[int, int], margin: int
    ) -> EnsembleStage | None:
        """The ensemble stage of `cfg`'s settings (None: off), sharing the forecaster's motion."""
        settings = cfg.ensemble_settings()
        if settings is None:
            return None
        return EnsembleStage(
            model,
            settings,
            num_leads=self.num_leads,
            grid=grid,
            margin=margin,
            motion=self._forecaster.motion,
        )

    @property
    def cfg(self) -> ServeConfig:
        return self._cfg

    def reconfigure(self, cfg: ServeConfig) -> None:
        """Replace the config, whole, for every later call (SIGHUP). The settings the pipeline
        was built from (`FIXED_KEYS`) must be unchanged."""
        changed = [k for k in FIXED_KEYS if getattr(cfg, k) != getattr(self._cfg, k)]
        if changed:
            raise ConfigError(
                f"reconfigure: expected {changed} unchanged (they need a restart), got "
                + ", ".join(f"{k}={getattr(cfg, k)!r}" for k in changed)
            )
        self._cfg = cfg
        self._field_rules = FieldRules.of(cfg, self.model.transform)

    def status(self) -> PipelineStatus:
        buf = self._buffer
        return PipelineStatus(
            frames=buf.count, capacity=buf.input_length, newest_time=buf.newest_time
        )

    # -- lifetime ----------------------------------------------------------------------------

    def compile(self, *, pre_encoding: bool = True) -> float:
        """Compile for the operational shape (the buffer's update and the forecaster);
        `pre_encoding=False` for one-off forecasts."""
        self._buffer.compile()
        seconds = self._forecaster.compile(pre_encoding=pre_encoding)
        if self._ensemble is not None:
            seconds += self._ensemble.compile()
        return seconds

    def start(self) -> None:
        """Start the scan reader process (`isolate_reads`)."""
        if self._read_worker is not None:
            self._read_worker.start()

    def close(self) -> tuple[Failed, ...]:
        """Finish a background pre-encoding, stop the reader process and the forecast file
        compressor's threads; what failed."""
        with _guard(Stage.ENCODE, _NEXT_WINDOW) as waited:
            self._forecaster.wait_pre_encode()
        if self._read_worker is not None:
            self._read_worker.close()
        self._compressor.shutdown()
        return waited.failed

    # -- the scans of one batch --------------------------------------------------------------

    def step(
        self,
        paths: Sequence[Path],
        now: datetime,
        *,
        max_age_seconds: float | None = None,
        forecast: bool = True,
        read_at_most: int | None = None,
    ) -> list[Outcome]:
        """What becomes of the scans at `paths`, the clock reading `now`: one outcome per path,
        in the order given. Every scan is read, then admitted and buffered in valid-time
        order; the newest that completes a window is forecast from (the others that completed
        one are `skipped`). `max_age_seconds` refuses older scans (`stale`); `forecast=False`
        buffers only; `read_at_most` stops reading once that many scans were read (the paths
        after get no outcome)."""
        outcomes: dict[int, Outcome] = {}
        frames: list[tuple[int, Frame]] = []
        for i, path in enumerate(paths):
            if read_at_most is not None and len(frames) >= read_at_most:
                break
            with _guard(Stage.READ, path) as read:
                frames.append((i, self.read(path)))
            if read.failure is not None:
                outcomes[i] = read.failure
        encode_wait = 0.0
        with _guard(Stage.ENCODE, _NEXT_WINDOW) as waited:
            encode_wait = self._forecaster.wait_pre_encode()
        completing: list[tuple[int, Buffered, Frame]] = []  # the scans that completed a window
        for i, frame in sorted(frames, key=lambda item: item[1].valid_time):
            with _guard(Stage.TRANSFER, frame.path) as admitted:
                self._admit(frame, now, max_age_seconds)
                push, buffered = self._buffer_frame(frame)
            if admitted.failure is not None:
                outcomes[i] = admitted.failure
                continue
            entered = Buffered(path=frame.path, valid_time=frame.valid_time, push=push)
            outcomes[i] = entered
            if self._buffer.full:
                completing.append((i, entered, buffered))
        if forecast and completing and self._buffer.full:
            *skipped, (i, entered, newest) = completing
            for j, outcome, _ in skipped:
                outcomes[j] = dataclasses.replace(outcome, skipped=True)
            outcomes[i] = self._forecast(newest, entered.push, encode_wait)
        result = [outcomes[i] for i in sorted(outcomes)]
        return _with_housekeeping(result, waited.failed)

    def refill(self, candidates: Sequence[Path], now: datetime) -> list[Outcome]:
        """The start-up refill from `candidates`, newest first: read until twice the buffer's
        capacity were read or `REFILL_TRIES` x its capacity tried, buffered by the same rules
        (scans older than `refill_max_age_hours` are `stale`); no forecast, the window is
        pre-encoded instead."""
        capacity = self._buffer.input_length
        hours = self._cfg.refill_max_age_hours
        result = self.step(
            candidates[: REFILL_TRIES * capacity],
            now,
            max_age_seconds=None if hours is None else hours * 3600.0,
            forecast=False,
            read_at_most=2 * capacity,
        )
        with _guard(Stage.ENCODE, Path("the refilled window")) as encoded:
            self._pre_encode(background=False)
        return _with_housekeeping(result, encoded.failed)

    @contextlib.contextmanager
    def _stage(self, stage: Stage) -> Iterator[_Lap]:
        """Time the block (`nowcastd_stage_duration_seconds` with metrics)."""
        lap = _Lap()
        start = time.perf_counter()
        try:
            if self.metrics is None:
                yield lap
            else:
                with self.metrics.time_stage(stage):
                    yield lap
        finally:
            lap.seconds = time.perf_counter() - start

    # -- the stages --------------------------------------------------------------------------

    def policy(self) -> ReadPolicy:
        """What a scan file may be (`guard`), from the config and the domain's native grid."""
        cfg = self._cfg
        return ReadPolicy(
            expected_shape=self.domain.native_shape,
            symlinks_within=cfg.watch_dir if cfg.follow_symlinks else None,
            allow_external=cfg.allow_hdf5_external,
            max_file_bytes=cfg.max_scan_bytes,
            max_abs_gain=cfg.max_abs_gain,
            max_abs_offset=cfg.max_abs_offset,
        )

    def read(self, path: Path) -> Frame:
        """The first stage alone: read, check the rain rates, crop to the domain, model units;
        ScanRefused if refused."""
        cfg = self._cfg
        reader, policy, worker = cfg.reader, self.policy(), self._read_worker
        with self._stage(Stage.READ) as lap:
            scan = _read_scan(Path(path), reader, policy, worker)
            if scan.valid_time.tzinfo is None:
                raise ScanRefused(
                    RejectReason.CORRUPT,
                    f"{printable(scan.name)}: expected a UTC valid time, got a naive one",
                )
            scan = admit_field(scan, self._field_rules)
            try:
                grid = self.domain.crop_grid(scan.grid, name=scan.name)
                model, valid = self._frames_domain.model_input(scan, self.model.transform)
            except ScanRefused:
                raise
            except ScanError as e:
                raise ScanRefused(RejectReason.WRONG_GRID, str(e)) from e
        return Frame(
            path=scan.path,
            valid_time=scan.valid_time,
            model=model[..., None],
            nan_mask=valid == 0,
            grid=grid,
            timings=timings({Stage.READ.value: lap.seconds}),
        )

    def _admit(self, frame: Frame, now: datetime, max_age_seconds: float | None) -> None:
        """The admission rules, then the buffer's ordering rules; ScanRefused for a frame
        that breaks one."""
        self._check_plausible(frame, now, max_age_seconds)
        self._buffer.check(frame.valid_time, name=frame.name)

    def _buffer_frame(self, frame: Frame) -> tuple[Push, Frame]:
        """Transfer an admitted frame to the device and push it into the buffer; how it was
        buffered, and the frame as buffered (with its transfer time)."""
        buf = self._buffer
        with self._stage(Stage.TRANSFER) as lap:
            device_frame = jax.device_put(frame.model, buf.device)
        buffered = dataclasses.replace(
            frame, timings=timings({**frame.timings, Stage.TRANSFER.value: lap.seconds})
        )
        push = buf.push(device_frame, valid_time=frame.valid_time, name=frame.name, record=buffered)
        return push, buffered

    def _check_plausible(self, frame: Frame, now: datetime, max_age_seconds: float | None) -> None:
        """ScanRefused for a frame valid more than `max_future_seconds` after `now`, older
        than `max_age_seconds` (the start-up refill), or off the timestep grid of the newest
        buffered scan."""
        cfg, t = self._cfg, frame.valid_time
        ahead = (t - now).total_seconds()
        if ahead > cfg.max_future_seconds:
            raise ScanRefused(
                RejectReason.FUTURE,
                f"{frame.name}: expected a valid time at most {cfg.max_future_seconds:g} s "
                f"after the clock ({now:%Y-%m-%dT%H:%M:%SZ}), got {t:%Y-%m-%dT%H:%M:%SZ}",
            )
        if max_age_seconds is not None and -ahead > max_age_seconds:
            raise ScanRefused(
                RejectReason.STALE,
                f"{frame.name}: expected a valid time within {max_age_seconds:g} s of the "
                f"clock, got {t:%Y-%m-%dT%H:%M:%SZ}",
            )
        newest = self._buffer.newest_time
        if newest is None:
            return
        delta = (t - newest).total_seconds()
        if not 0 < delta <= cfg.gap_seconds:
            return  # the buffer's own rules: duplicate, out of order, or a gap (a reset)
        step = cfg.timestep_seconds
        off = delta % step
        if min(off, step - off) > cfg.cadence_seconds:
            raise ScanRefused(
                RejectReason.OFF_CADENCE,
                f"{frame.name}: expected a multiple of {step:g} s after the newest scan "
                f"({newest:%Y-%m-%dT%H:%M:%SZ}), got {delta:g} s",
            )

    def _forecast(self, newest: Frame, push: Push, encode_wait: float) -> Outcome:
        """Forecast from the full buffer, write it, prune, pre-encode the next window."""
        with _guard(Stage.ROLLOUT, newest.path) as rolled:
            forecast, forecast_seconds = self._rollout()
        if rolled.failure is not None:
            return rolled.failure
        with self._stage(Stage.WRITE) as lap, _guard(Stage.WRITE, newest.path) as wrote:
            file = self._write(forecast)
        if wrote.failure is not None:
            return wrote.failure
        in_place = time.monotonic()
        with _guard(Stage.ENCODE, file) as encoded:
            self._pre_encode(background=True)
        with _guard(Stage.RETENTION, file) as pruned:
            self._prune()
        return Written(
            path=newest.path,
            file=file,
            forecast=forecast,
            push=push,
            timings=timings(
                {
                    **newest.timings,
                    "encode_wait": encode_wait,
                    **forecast_seconds,
                    Stage.WRITE.value: lap.seconds,
                }
            ),
            in_place=in_place,
            housekeeping=(*encoded.failed, *pruned.failed),
        )

    def _window(self) -> Window:
        """The full buffer as the forecast's window."""
        buf = self._buffer
        if not buf.full:
            raise NowcastdError(
                f"forecast: expected {buf.input_length} consecutive scans in the buffer, "
                f"got {buf.count}"
            )
        infos = buf.infos
        return Window.from_model(  # the motion stage reads the frames on the host
            np.stack([i.record.model[..., 0] for i in infos])[None],
            np.stack([i.record.nan_mask for i in infos])[None],
            self.model.transform,
            context=buf.frames,
            with_motion=self.model.cfg.lagrangian or self._ensemble is not None,
            margin=self._forecaster.margin,
        )

    def _rollout(self) -> tuple[Forecast, dict[str, float]]:
        """The forecast from the full buffer (pre-encoded when possible), with the ensemble's
        products when configured, and the seconds of each of its stages."""
        cfg, window = self._cfg, self._window()
        infos = self._buffer.infos
        newest = infos[-1].record
        seconds: dict[str, float] = {}

        @contextlib.contextmanager
        def timed(stage: str) -> Iterator[None]:
            with self._stage(member(Stage, stage, "stage")) as lap:
                yield
            seconds[stage] = lap.seconds

        ensemble, flow = self._ensemble, None
        if ensemble is not None:  # one motion for the rollout and the members
            flow = ensemble.flow(window, timed)
        rates, pre_encoded = self._forecaster.forecast(
            window, infos, timed=timed, flow=flow if self.model.cfg.lagrangian else None
        )
        products = None
        if ensemble is not None and flow is not None:
            products = ensemble.products(window, flow, newest.valid_time, cfg, timed)
        step = cfg.timestep_seconds
        forecast = Forecast(
            precip=rates[0],
            issue_time=newest.valid_time,
            lead_seconds=tuple(round(step * (k + 1)) for k in range(rates.shape[1])),
            input_names=tuple(i.record.name for i in infos),
            input_times=tuple(i.valid_time for i in infos),
            grid=newest.grid,
            nan_mask=window.no_data[0],
            model_name=self.model.cfg.model_name,
            checkpoint_digest=self.model.digest,
            pre_encoded=pre_encoded,
            ensemble=products,
        )
        return forecast, seconds

    def _write(self, forecast: Forecast) -> Path:
        return write_forecast(
            self._cfg.output_dir or Path("."),
            **forecast.file_contents(),
            compressor=self._compressor,
        )

    def _pre_encode(self, background: bool) -> None:
        """Encode the newest I - 1 buffered frames for the next scan's forecast (if full)."""
        buf = self._buffer
        if buf.full:
            self._forecaster.pre_encode(buf.frames, buf.infos, background=background)

    def _prune(self) -> None:
        if not self.retention:
            return
        cfg, out_dir = self._cfg, self._cfg.output_dir or Path(".")
        try:
            prune_forecasts(
                out_dir,
                keep_last=cfg.retention_keep_last,
                max_age_hours=cfg.retention_max_age_hours,
                now=datetime.now(UTC),
            )
        except OSError as e:
            raise NowcastdError(f"retention in {out_dir}: {e}") from e


def _refused(stage: Stage, path: Path, e: ScanRefused) -> Rejected | Failed:
    """The file's `Rejected` outcome, or its "internal" failure for a reason no metric knows."""
    try:
        reason = RejectReason(e.reason)
    except ValueError:
        return _internal(stage, path, e)
    return Rejected(path=path, reason=reason, detail=str(e))


def _internal(stage: Stage, path: Path, e: Exception) -> Failed:
    """An exception no rule expected while `stage` handled the file at `path` (a refusal
    with a reason the metrics do not know is one too): that file's "internal" failure."""
    name = printable(path.name)
    what = type(e).__name__
    if isinstance(e, ScanRefused):
        what = f"refusal reason {e.reason!r} (not one of the metrics' reasons)"
    logger.warning("%s: unexpected %s in stage %s", name, what, stage, exc_info=e)
    detail = f"{name}: unexpected {what} in stage {stage}: {e}"
    return Failed(path=path, stage=stage, reason=FailureReason.INTERNAL, detail=detail)


def _with_housekeeping(outcomes: list[Outcome], failed: tuple[Failed, ...]) -> list[Outcome]:
    """`outcomes` with `failed` added to the last one's housekeeping."""
    if not failed or not outcomes:
        return outcomes
    last = outcomes[-1]
    return [*outcomes[:-1], dataclasses.replace(last, housekeeping=(*last.housekeeping, *failed))]
