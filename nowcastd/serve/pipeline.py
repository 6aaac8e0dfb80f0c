"""One forecast's pipeline: read → grid → transform → buffer → rollout → write → retention.

Shared by `nowcastd serve` (one step per scan, errors caught by the service loop),
`nowcastd predict` (once, errors reported by the CLI) and `nowcastd demo` (frames of the
bundled movie instead of files).

The pipeline hands out values: `read` a `Frame`, `forecast` a `Forecast` that holds all that
`write` puts in the file, `status` a `PipelineStatus`. Its state is the input buffer (with
each buffered `Frame`), the compiled forecaster (with its pre-encoded window) and one
`ServeConfig` reference, which `reconfigure` replaces whole; each call reads it once.

NaN rule: pixels without data (NaN after the domain crop) enter the model as 0 in model units
(no rain). The forecast is NaN (no data) wherever the newest input scan had no data, and that
mask is written to the forecast file as `input_nan_mask`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import jax
import numpy as np

from nowcastd.errors import ConfigError, NowcastdError, ScanError, UnknownFormatError
from nowcastd.io.domain import Domain
from nowcastd.io.forecast_file import prune_forecasts, write_forecast
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.io.readers import GridInfo, ReadPolicy, Scan, ScanRefused, printable
from nowcastd.io.scan_settings import ReaderConfig
from nowcastd.serve.buffer import FrameBuffer, Push
from nowcastd.serve.config import ServeConfig
from nowcastd.serve.forecaster import Forecaster
from nowcastd.serve.metrics import ServiceMetrics
from nowcastd.serve.read_worker import ReadWorker

__all__ = ["Forecast", "Frame", "Pipeline", "PipelineStatus", "ScanRejected"]

logger = logging.getLogger(__name__)

#: ServeConfig keys the pipeline is built from; changing them needs a new pipeline.
FIXED_KEYS = ("checkpoint", "domain", "lead_frames", "timestep_seconds", "max_gap_seconds")


#: A scan the service refuses; `reason` is one of `metrics.REJECT_REASONS`.
ScanRejected = ScanRefused


def _timings(values: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True, kw_only=True, eq=False)
class Frame:
    """One scan on the model grid, in model units, NaN filled with 0, with its NaN mask.

    `timings`: seconds per stage this frame went through ("read", then "transfer" once
    buffered).
    """

    path: Path
    valid_time: datetime
    model: np.ndarray  # (H, W, 1) float32
    nan_mask: np.ndarray  # (H, W) bool
    grid: GridInfo
    timings: Mapping[str, float]

    @property
    def name(self) -> str:
        """The file name as one printable line (`guard.printable`), as logs and files show it."""
        return printable(self.path.name)


@dataclass(frozen=True, kw_only=True, eq=False)
class Forecast:
    """One forecast, everything its file holds: `precip` (K, H, W) mm/h, NaN where the
    newest input had no data (`nan_mask`), on `grid`, from the inputs named, oldest first.

    `timings`: seconds per stage of the newest input and of this forecast ("read",
    "transfer", "rollout"); `pre_encoded`: whether the pre-encoded window was used.
    """

    precip: np.ndarray
    issue_time: datetime
    lead_seconds: tuple[int, ...]
    input_names: tuple[str, ...]
    input_times: tuple[datetime, ...]
    grid: GridInfo
    nan_mask: np.ndarray
    model_name: str
    checkpoint_digest: str
    pre_encoded: bool
    timings: Mapping[str, float]

    def __post_init__(self) -> None:
        k = self.precip.shape[0]
        if len(self.lead_seconds) != k:
            raise ValueError(f"lead_seconds: expected {k} (one per lead), got {self.lead_seconds}")
        self.precip.flags.writeable = False
        self.nan_mask.flags.writeable = False

    @property
    def valid_times(self) -> tuple[datetime, ...]:
        return tuple(self.issue_time + timedelta(seconds=s) for s in self.lead_seconds)

    def file_contents(self) -> dict[str, object]:
        """`write_forecast`'s keyword arguments: every field but how the forecast was run."""
        run = ("pre_encoded", "timings")
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in run
        }


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


def _read_scan(
    path: Path, reader: ReaderConfig, policy: ReadPolicy, worker: ReadWorker | None
) -> Scan:
    """`read_scan` with the reader settings, in `worker` if given; a refused file raises
    ScanRejected with its reason."""
    try:
        if worker is not None:
            return worker.read(path, reader, policy)
        return reader.read(path, policy=policy)
    except ScanRejected:
        raise
    except UnknownFormatError as e:
        raise ScanRejected("unknown_format", str(e)) from e
    except ScanError as e:
        raise ScanRejected("corrupt", str(e)) from e
    except MemoryError as e:
        raise ScanRejected("too_large", f"{printable(path.name)}: too large to read") from e


def _plausible_rain(scan: Scan, max_rate: float, max_fraction: float) -> Scan:
    """The scan with rates outside 0..`max_rate` clipped; ScanRejected when more than
    `max_fraction` of its pixels with data are outside."""
    field = scan.field
    outside = ~np.isnan(field) & ~((field >= 0) & (field <= max_rate))
    count = int(np.count_nonzero(outside))
    if not count:
        return scan
    with_data = max(int(np.count_nonzero(~np.isnan(field))), 1)
    if count > max_fraction * with_data:
        raise ScanRejected(
            "implausible_rain",
            f"{printable(scan.name)}: expected rain rates within 0..{max_rate:g} mm/h, got "
            f"{count} of {with_data} pixels outside (range {np.nanmin(field):g}.."
            f"{np.nanmax(field):g})",
        )
    clipped = np.where(outside, np.where(field < 0, 0.0, max_rate), field).astype(np.float32)
    logger.warning(
        "%s: %d pixels outside 0..%g mm/h clipped", printable(scan.name), count, max_rate
    )
    return dataclasses.replace(scan, field=clipped)


class Pipeline:
    """The model, its domain, the device buffer and the compiled forecaster."""

    def __init__(
        self,
        cfg: ServeConfig,
        model: LoadedModel,
        *,
        metrics: ServiceMetrics | None = None,
        isolate_reads: bool = False,
    ) -> None:
        mcfg = model.cfg
        self.domain = cfg.domain or Domain.full((mcfg.img_height, mcfg.img_width))
        shape = self.domain.model_shape
        model.check_grid(shape, "[domain]")
        self._cfg = cfg
        self.model = model
        self.metrics = metrics
        self.num_leads = cfg.lead_frames or (mcfg.total_length - mcfg.input_length)
        time_encode = None if metrics is None else (lambda: metrics.time_stage("encode"))
        self._forecaster = Forecaster(
            model.network,
            model.transform,
            num_leads=self.num_leads,
            grid=shape,
            time_encode=time_encode,
        )
        self.read_worker = (
            ReadWorker(
                timeout_seconds=cfg.read_timeout_seconds,
                memory_limit_bytes=cfg.read_memory_limit_bytes,
            )
            if isolate_reads
            else None
        )
        self._buffer = FrameBuffer(
            input_length=mcfg.input_length,
            frame_shape=(*shape, 1),
            max_gap_seconds=cfg.gap_seconds,
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

    def status(self) -> PipelineStatus:
        buf = self._buffer
        return PipelineStatus(
            frames=buf.count, capacity=buf.input_length, newest_time=buf.newest_time
        )

    @contextlib.contextmanager
    def _stage(self, stage: str) -> Iterator[_Lap]:
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

    def compile(self, *, pre_encoding: bool = True) -> float:
        """Compile for the operational shape; `pre_encoding=False` for one-off forecasts."""
        return self._forecaster.compile(pre_encoding=pre_encoding)

    # -- per scan ----------------------------------------------------------------------------

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
        """Read, crop to the domain and convert to model units; ScanRejected if refused.

        With `isolate_reads`, the file is read in a worker process (`read_worker`).
        """
        reader, policy, worker = self._cfg.reader, self.policy(), self.read_worker
        return self._frame(lambda: _read_scan(Path(path), reader, policy, worker))

    def admit(self, frame: Frame, *, now: datetime, max_age_seconds: float | None) -> None:
        """ScanRejected for a frame the service must not buffer: valid more than
        `max_future_seconds` after `now`, older than `max_age_seconds` (the start-up refill),
        or off the timestep grid of the newest buffered scan."""
        cfg, t = self._cfg, frame.valid_time
        ahead = (t - now).total_seconds()
        if ahead > cfg.max_future_seconds:
            raise ScanRejected(
                "future",
                f"{frame.name}: expected a valid time at most {cfg.max_future_seconds:g} s "
                f"after the clock ({now:%Y-%m-%dT%H:%M:%SZ}), got {t:%Y-%m-%dT%H:%M:%SZ}",
            )
        if max_age_seconds is not None and -ahead > max_age_seconds:
            raise ScanRejected(
                "stale",
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
            raise ScanRejected(
                "off_cadence",
                f"{frame.name}: expected a multiple of {step:g} s after the newest scan "
                f"({newest:%Y-%m-%dT%H:%M:%SZ}), got {delta:g} s",
            )

    def frame(self, scan: Scan) -> Frame:
        """A scan already in memory, cropped to the domain and converted like `read`'s."""
        return self._frame(lambda: scan)

    def _frame(self, get_scan: Callable[[], Scan]) -> Frame:
        cfg = self._cfg
        with self._stage("read") as lap:
            scan = get_scan()
            scan = _plausible_rain(scan, cfg.max_rain_rate_mm_h, cfg.max_implausible_fraction)
            try:
                model, valid = self.domain.model_input(scan, self.model.transform)
                grid = self.domain.crop_grid(scan.grid)
            except ScanError as e:
                raise ScanRejected("wrong_grid", str(e)) from e
        return Frame(
            path=scan.path,
            valid_time=scan.valid_time,
            model=model[..., None],
            nan_mask=valid == 0,
            grid=grid,
            timings=_timings({"read": lap.seconds}),
        )

    def push(self, frame: Frame) -> Push:
        """Transfer the frame to the device and into the buffer, by the ordering rules."""
        self._forecaster.wait_pre_encode()  # a background encode reads the buffer donated here
        buf = self._buffer
        if not buf.check(frame.valid_time).accepted:
            return buf.push(frame.model, valid_time=frame.valid_time, name=frame.name)
        with self._stage("transfer") as lap:
            device_frame = jax.device_put(frame.model, buf.device)
        record = dataclasses.replace(
            frame, timings=_timings({**frame.timings, "transfer": lap.seconds})
        )
        return buf.push(device_frame, valid_time=frame.valid_time, name=frame.name, record=record)

    def forecast(self) -> Forecast:
        """The forecast from the full buffer (pre-encoded when possible), NaN rule applied."""
        cfg, buf = self._cfg, self._buffer
        if not buf.full:
            raise NowcastdError(
                f"forecast: expected {buf.input_length} consecutive scans in the buffer, "
                f"got {buf.count}"
            )
        infos = buf.infos
        newest: Frame = infos[-1].record
        with self._stage("rollout") as lap:
            precip, pre_encoded = self._forecaster.forecast(buf.frames, infos)
        precip = np.array(precip, dtype=np.float32)
        precip[:, newest.nan_mask] = np.nan
        step = cfg.timestep_seconds
        return Forecast(
            precip=precip,
            issue_time=newest.valid_time,
            lead_seconds=tuple(round(step * (k + 1)) for k in range(precip.shape[0])),
            input_names=tuple(i.name for i in infos),
            input_times=tuple(i.valid_time for i in infos),
            grid=newest.grid,
            nan_mask=newest.nan_mask,
            model_name=self.model.cfg.model_name,
            checkpoint_digest=self.model.digest,
            pre_encoded=pre_encoded,
            timings=_timings({**newest.timings, "rollout": lap.seconds}),
        )

    def pre_encode(self, *, background: bool = False) -> None:
        """Encode the newest I - 1 buffered frames for the next scan's forecast (if full).

        `background=True` returns at once (see `forecaster`); `push` and `forecast` wait for it.
        """
        buf = self._buffer
        if buf.full:
            self._forecaster.pre_encode(buf.frames, buf.infos, background=background)

    def wait_pre_encode(self) -> float:
        """Wait for a background pre-encoding, raise what it raised; returns seconds waited."""
        return self._forecaster.wait_pre_encode()

    def write(self, forecast: Forecast, out_dir: Path) -> Path:
        """Write `forecast` atomically into `out_dir`; returns the file's path."""
        with self._stage("write"):
            return write_forecast(out_dir, **forecast.file_contents())

    def prune(self, out_dir: Path) -> list[Path]:
        cfg = self._cfg
        try:
            return prune_forecasts(
                out_dir,
                keep_last=cfg.retention_keep_last,
                max_age_hours=cfg.retention_max_age_hours,
                now=datetime.now(UTC),
            )
        except OSError as e:
            raise NowcastdError(f"retention in {out_dir}: {e}") from e
