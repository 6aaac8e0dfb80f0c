"""One forecast's pipeline: read → grid → transform → buffer → rollout → write → retention.

Shared by `nowcastd serve` (one step per scan, errors caught by the service loop) and
`nowcastd predict` (once, errors reported by the CLI).

NaN rule: pixels without data (NaN after the domain crop) enter the model as 0 in model units
(no rain). The forecast is NaN (no data) wherever the newest input scan had no data, and that
mask is written to the forecast file as `input_nan_mask`.

Pre-encoding in the service runs on a background thread (`start_pre_encode`), dispatched right
after a forecast is written, so a scan that lands meanwhile is read at once instead of waiting
in the queue. XLA cannot abandon a running computation, and finishing the encode is always
cheaper than the full re-encoding a forecast without it needs, so `push` waits for it (before
the buffer it reads is donated) and the forecast then uses it; the wait is timed as
`encode_wait`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jax
import numpy as np

from nowcastd.errors import ConfigError, NowcastdError, ScanError, UnknownFormatError
from nowcastd.io.domain import Domain
from nowcastd.io.forecast_file import prune_forecasts, write_forecast
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.io.readers import GridInfo, detect_format, read_scan
from nowcastd.serve.buffer import FrameBuffer, Push
from nowcastd.serve.config import ServeConfig
from nowcastd.serve.forecaster import Forecaster
from nowcastd.serve.metrics import ServiceMetrics

__all__ = ["Frame", "Pipeline", "ScanRejected"]

logger = logging.getLogger(__name__)


class ScanRejected(ScanError):
    """A scan the service refuses; `reason` is one of `metrics.REJECT_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, eq=False)
class Frame:
    """One scan on the model grid, in model units, NaN filled with 0, with its NaN mask."""

    path: Path
    valid_time: datetime
    model: np.ndarray  # (H, W, 1) float32
    nan_mask: np.ndarray  # (H, W) bool
    grid: GridInfo

    @property
    def name(self) -> str:
        return self.path.name


class Pipeline:
    """The model, its domain, the device buffer and the compiled forecaster."""

    def __init__(
        self, cfg: ServeConfig, model: LoadedModel, *, metrics: ServiceMetrics | None = None
    ) -> None:
        mcfg = model.cfg
        if mcfg.is_action or mcfg.img_channel != 1:
            raise ConfigError(
                f"{model.path}: expected a one-channel, non-action model for radar scans, got "
                f"{mcfg.model_name} with img_channel={mcfg.img_channel}"
            )
        shape = (mcfg.img_height, mcfg.img_width)
        self.domain = cfg.domain or Domain.full(shape)
        if self.domain.model_shape != shape:
            raise ConfigError(
                f"[domain]: expected the model grid {shape} of {model.path.name}, "
                f"got {self.domain.model_shape}"
            )
        self.cfg = cfg
        self.model = model
        self.metrics = metrics
        self.num_leads = cfg.lead_frames or (mcfg.total_length - mcfg.input_length)
        self.forecaster = Forecaster(model.network, model.transform, num_leads=self.num_leads)
        self.buffer = FrameBuffer(
            input_length=mcfg.input_length,
            frame_shape=(*shape, 1),
            max_gap_seconds=cfg.gap_seconds,
        )
        self.timings: dict[str, float] = {}
        self.used_pre_encoding = False
        self._newest: Frame | None = None
        self._encoding: threading.Thread | None = None
        self._encode_error: Exception | None = None

    @contextlib.contextmanager
    def _stage(self, stage: str, *, record: bool = True) -> Iterator[None]:
        start = time.perf_counter()
        try:
            if self.metrics is None:
                yield
            else:
                with self.metrics.time_stage(stage):
                    yield
        finally:
            if record:
                self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    def compile(self, *, pre_encoding: bool = True) -> float:
        return self.forecaster.compile(pre_encoding=pre_encoding)

    # -- per scan ----------------------------------------------------------------------------

    def read(self, path: Path) -> Frame:
        """Read, crop to the domain and convert to model units; ScanRejected if refused."""
        path = Path(path)
        reader = self.cfg.reader
        with self._stage("read"):
            fmt = reader.format
            if fmt == "auto":
                try:
                    fmt = detect_format(path)
                except UnknownFormatError as e:
                    raise ScanRejected("unknown_format", str(e)) from e
                except ScanError as e:
                    raise ScanRejected("corrupt", str(e)) from e
            try:
                scan = read_scan(
                    path,
                    fmt=fmt,
                    zr_a=reader.zr_a,
                    zr_b=reader.zr_b,
                    npy_time_pattern=reader.npy_time_pattern,
                    npy_time_format=reader.npy_time_format,
                )
            except ScanError as e:
                raise ScanRejected("corrupt", str(e)) from e
            try:
                model, valid = self.domain.model_input(scan, self.model.transform)
                grid = self.domain.crop_grid(scan.grid)
            except ScanError as e:
                raise ScanRejected("wrong_grid", str(e)) from e
        return Frame(
            path=path,
            valid_time=scan.valid_time,
            model=model[..., None],
            nan_mask=valid == 0,
            grid=grid,
        )

    def push(self, frame: Frame) -> Push:
        """Transfer the frame to the device and into the buffer, by the ordering rules."""
        self.wait_pre_encode()  # it reads the buffer that this push donates
        outcome = self.buffer.check(frame.valid_time)
        if not outcome.accepted:
            return self.buffer.push(frame.model, valid_time=frame.valid_time, name=frame.name)
        with self._stage("transfer"):
            device_frame = jax.device_put(frame.model, self.buffer.device)
            outcome = self.buffer.push(device_frame, valid_time=frame.valid_time, name=frame.name)
        self._newest = frame
        return outcome

    def forecast(self) -> np.ndarray:
        """(K, H, W) mm/h from the full buffer (pre-encoded when possible), NaN rule applied."""
        if not self.buffer.full:
            raise NowcastdError(
                f"forecast: expected {self.buffer.input_length} consecutive scans in the buffer, "
                f"got {self.buffer.count}"
            )
        with self._stage("rollout"):
            precip, self.used_pre_encoding = self.forecaster.forecast(
                self.buffer.frames, self.buffer.infos
            )
        precip = np.array(precip, dtype=np.float32)
        precip[:, self._newest.nan_mask] = np.nan
        return precip

    def pre_encode(self) -> None:
        """Encode the newest I - 1 frames for the next scan's forecast, and wait for it."""
        self.wait_pre_encode()
        if self.buffer.full and self.forecaster.can_pre_encode:
            with self._stage("encode"):
                self.forecaster.pre_encode(self.buffer.frames, self.buffer.infos)

    def start_pre_encode(self) -> None:
        """Like `pre_encode`, on a background thread; returns at once."""
        self.wait_pre_encode()
        if not (self.buffer.full and self.forecaster.can_pre_encode):
            return
        self._encoding = threading.Thread(
            target=self._encode_in_background,
            args=(self.buffer.frames, self.buffer.infos),
            name="pre-encode",
            daemon=True,
        )
        self._encoding.start()

    def _encode_in_background(self, frames, infos) -> None:
        try:
            with self._stage("encode", record=False):
                self.forecaster.pre_encode(frames, infos)
        except Exception as e:  # handed to the worker by wait_pre_encode
            self._encode_error = e

    def wait_pre_encode(self) -> None:
        """Wait for a background pre-encoding; raise what it raised."""
        thread, self._encoding = self._encoding, None
        if thread is None:
            return
        start = time.perf_counter()
        thread.join()
        self.timings["encode_wait"] = time.perf_counter() - start  # not a metrics stage
        error, self._encode_error = self._encode_error, None
        if error is not None:
            raise error

    def write(self, precip: np.ndarray, out_dir: Path) -> Path:
        infos = self.buffer.infos
        step = self.cfg.timestep_seconds
        with self._stage("write"):
            return write_forecast(
                out_dir,
                issue_time=infos[-1].valid_time,
                precip=precip,
                lead_seconds=[round(step * (k + 1)) for k in range(precip.shape[0])],
                input_names=[i.name for i in infos],
                input_times=[i.valid_time for i in infos],
                model_name=self.model.cfg.model_name,
                checkpoint_digest=self.model.digest,
                grid=self._newest.grid,
                nan_mask=self._newest.nan_mask,
            )

    def prune(self, out_dir: Path) -> list[Path]:
        try:
            return prune_forecasts(
                out_dir,
                keep_last=self.cfg.retention_keep_last,
                max_age_hours=self.cfg.retention_max_age_hours,
                now=datetime.now(UTC),
            )
        except OSError as e:
            raise NowcastdError(f"retention in {out_dir}: {e}") from e
