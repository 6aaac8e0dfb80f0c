"""`ServeConfig`: the typed configuration of `nowcastd serve` and `nowcastd predict`.

Resolved once, at the command line, by `nowcastd.settings`: command-line flag, then environment
(`NOWCASTD_SERVE_<KEY>`, e.g. `NOWCASTD_SERVE_METRICS_PORT=9811`; the compile cache also as
`NOWCASTD_COMPILE_CACHE`, which the systemd units set), then the TOML file (`[serve]`,
`[reader]`, `[domain]` as in `deploy/config.example.toml`), then the defaults below. Nothing past
`load_serve_config` sees a string where a number or a bool belongs. Each `[serve]` field carries
its flag's help (`setting(default, help)`), which `nowcastd serve --help` shows.
"""

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nowcastd.ensemble.settings import EnsembleSettings
from nowcastd.errors import ConfigError
from nowcastd.io.domain import Domain
from nowcastd.io.scan_settings import ReaderConfig, scan_settings
from nowcastd.settings import missing_error, read_config, resolve, setting, specs
from nowcastd.strategy.search import StrategySetting, parse_setting

__all__ = ["ENV_NAMES", "ENV_PREFIX", "ReaderConfig", "ServeConfig", "load_serve_config"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ENV_PREFIX = "NOWCASTD_SERVE_"
#: Environment names that are not simply NOWCASTD_SERVE_<KEY>.
ENV_NAMES = {"compile_cache_dir": "NOWCASTD_COMPILE_CACHE"}
#: `EnsembleSettings` fields by the [serve] keys that set them.
_ENSEMBLE_KEYS = {
    "members": "ensemble_members",
    "thresholds_mm_h": "probability_thresholds_mm_h",
    "design": "ensemble_design",
    "noise_gain": "ensemble_noise_gain",
}


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """Everything `nowcastd serve` needs (`[serve]` keys plus the reader and the domain).

    `lead_frames=None` means the model's `total_length - input_length`; `max_gap_seconds=None`
    means 1.5 x `timestep_seconds`; `domain=None` means the scan grid is the model grid;
    `retention_keep_last` or `retention_max_age_hours` None (or 0 in a file) means no limit.

    Hostile input: each scan is read in a worker process limited to `read_timeout_seconds` and
    `read_memory_limit_bytes`; files over `max_scan_bytes`, symlinks (unless `follow_symlinks`,
    and then only to files inside `watch_dir`) and HDF5 references to other files (unless
    `allow_hdf5_external`) are refused. Plausibility: a valid time more than
    `max_future_seconds` ahead of the clock, older than `refill_max_age_hours` at start-up
    (None or 0: any age), or off the cadence of the newest buffered scan by more than
    `cadence_tolerance_seconds` (None: a tenth of the timestep) is refused; so is a scan with
    more than `max_implausible_fraction` of its pixels outside 0..`max_rain_rate_mm_h` (fewer
    are clipped), more than `max_saturated_fraction` at or above the rate where the model's
    input saturates, more than `max_extreme_fraction` above `extreme_rain_rate_mm_h`, one
    constant non-zero value throughout (unless `refuse_constant_field` is off; the field rules
    are `serve.plausibility`), and a calibration beyond `max_abs_gain`/`max_abs_offset`. A
    worker that shows no progress for `stall_seconds` stops the systemd watchdog pings.

    `events_file`: one JSON line per scan outcome is appended there (`serve.events`), for
    programs; the log stays for people.

    `strategy`: how the compiled programs run (`model.strategy`): "auto" times the candidates
    at the first start on a CPU and caches the fastest (`nowcastd.strategy`, in `strategy/`
    of `compile_cache_dir`), "default" or a strategy name sets it.
    """

    watch_dir: Path | None = setting(None, "directory where scans appear")
    output_dir: Path | None = setting(None, "directory for forecast files")
    checkpoint: Path | None = setting(
        None, "checkpoint directory, or a run's save_dir (its newest); default: the bundled model"
    )
    metrics_addr: str = setting("127.0.0.1", "address of the Prometheus endpoint")
    metrics_port: int = setting(9810, "port of the Prometheus endpoint (0: any free)")
    lead_frames: int | None = setting(
        None, "frames forecast per scan; unset: the model's total_length - input_length"
    )
    timestep_seconds: float = setting(300.0, "time between scans")
    max_gap_seconds: float | None = setting(
        None, "a longer gap between scans empties the buffer; unset: 1.5 timesteps"
    )
    poll: bool = setting(False, "poll the directory instead of inotify", switch=True)
    poll_interval_seconds: float = setting(5.0, "polling period")
    settle_seconds: float = setting(2.0, "polling: how long a file's size must stay still")
    debounce_seconds: float = setting(
        0.5, "a file written in place is read after this long without events"
    )
    retention_keep_last: int | None = setting(288, "forecast files kept (0: no limit)")
    retention_max_age_hours: float | None = setting(
        24.0, "maximum age of forecast files (0: no limit)"
    )
    compile_cache_dir: Path | None = setting(
        None, "persistent JAX compile cache (also NOWCASTD_COMPILE_CACHE)"
    )
    strategy: StrategySetting = setting(
        "auto",
        "auto: time the candidate strategies of each program at the first start and cache the "
        "fastest; default, or a name such as ynn=off,wgrad=96,unroll=auto (bf16=on: bfloat16 "
        "convolutions, which change values)",
        parse=parse_setting,
    )
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR (--verbose: DEBUG)")
    events_file: Path | None = setting(
        None, "append one JSON line per scan outcome to this file (for programs)"
    )
    read_timeout_seconds: float = setting(
        20.0, "a scan read taking longer is abandoned (its reader process killed)"
    )
    read_memory_limit_bytes: int = setting(
        4 << 30, "address-space limit of the scan reader process"
    )
    max_scan_bytes: int = setting(1 << 30, "larger scan files are refused unread")
    follow_symlinks: bool = setting(
        False, "follow symlinks in watch_dir to files inside it (default: refuse them)", switch=True
    )
    allow_hdf5_external: bool = setting(
        False, "follow HDF5 external links/storage and virtual datasets", switch=True
    )
    max_future_seconds: float = setting(300.0, "scans valid further ahead of the clock are refused")
    refill_max_age_hours: float | None = setting(
        24.0, "start-up ignores scans older than this (0: any age)"
    )
    cadence_tolerance_seconds: float | None = setting(
        None, "off-timestep tolerance; unset: a tenth of the timestep"
    )
    max_rain_rate_mm_h: float = setting(
        1000.0, "rain rates above this are implausible (clipped, or refused if many)"
    )
    max_implausible_fraction: float = setting(
        0.01, "a scan with more implausible pixels than this is refused"
    )
    max_saturated_fraction: float = setting(
        0.01,
        "a scan with more pixels than this at or above the rate where the model's input "
        "saturates (205 mm/h for the dbz transform) is refused (1: never)",
    )
    extreme_rain_rate_mm_h: float = setting(
        150.0, "a rain rate no rain reaches over a share of a composite"
    )
    max_extreme_fraction: float = setting(
        0.01, "a scan with more pixels than this above extreme_rain_rate_mm_h is refused (1: never)"
    )
    refuse_constant_field: bool = setting(
        True, "refuse a scan of one constant non-zero value throughout", switch=True
    )
    max_abs_gain: float = setting(1000.0, "a larger calibration gain is refused")
    max_abs_offset: float = setting(10000.0, "a larger calibration offset is refused")
    stall_seconds: float = setting(
        600.0, "a worker without progress this long stops the systemd watchdog pings"
    )
    ensemble_members: int = setting(
        0,
        "members of an ensemble forecast per scan (0: none); each forecast file then holds the "
        "exceedance probabilities and the ensemble mean",
    )
    probability_thresholds_mm_h: tuple[float, ...] = setting(
        (0.1, 1.0, 5.0, 10.0), "rain rates whose exceedance probability the ensemble gives"
    )
    ensemble_write_members: bool = setting(
        False, "write every ensemble member to the forecast file too", switch=True
    )
    ensemble_design: str = setting(
        "perturb",
        "perturb: the network runs once and the members perturb its forecast; network: every "
        "member runs the network",
    )
    ensemble_noise_gain: float = setting(
        1.0, "scale of the ensemble's spatially correlated noise (0: motion perturbations only)"
    )
    ensemble_seed: int = setting(0, "base of the ensemble's seeds (each scan adds its time)")
    reader: ReaderConfig = ReaderConfig()
    domain: Domain | None = None

    def __post_init__(self) -> None:
        for name in ("watch_dir", "output_dir", "checkpoint", "compile_cache_dir", "events_file"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if not (0 <= self.metrics_port <= 65535):
            raise ValueError(f"metrics_port: expected 0..65535, got {self.metrics_port}")
        if self.lead_frames is not None and self.lead_frames < 1:
            raise ValueError(f"lead_frames: expected an int >= 1 or unset, got {self.lead_frames}")
        positive: tuple[str, ...] = ("timestep_seconds", "poll_interval_seconds", "max_gap_seconds")
        for name in positive:
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
        for name in ("settle_seconds", "debounce_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        positive += ("read_timeout_seconds", "max_rain_rate_mm_h", "max_abs_gain")
        positive += ("max_abs_offset", "stall_seconds", "max_future_seconds")
        positive += ("extreme_rain_rate_mm_h",)
        for name in positive[3:]:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
        for name in ("read_memory_limit_bytes", "max_scan_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {getattr(self, name)}")
        fractions = ("max_implausible_fraction", "max_saturated_fraction", "max_extreme_fraction")
        for name in fractions:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: expected 0..1, got {getattr(self, name)}")
        tolerance = self.cadence_tolerance_seconds
        if tolerance is not None and not (math.isfinite(tolerance) and tolerance >= 0):
            raise ValueError(f"cadence_tolerance_seconds: expected a number >= 0, got {tolerance}")
        if not self.metrics_addr.strip():
            raise ValueError("metrics_addr: expected a host name or address, got an empty string")
        if self.refill_max_age_hours == 0:
            object.__setattr__(self, "refill_max_age_hours", None)
        if self.refill_max_age_hours is not None and not self.refill_max_age_hours > 0:
            raise ValueError(
                f"refill_max_age_hours: expected a number > 0 or unset, got {self.refill_max_age_hours}"
            )
        for name in ("retention_keep_last", "retention_max_age_hours"):
            if getattr(self, name) == 0:  # TOML has no null: 0 switches the limit off
                object.__setattr__(self, name, None)
        if self.retention_keep_last is not None and self.retention_keep_last < 1:
            raise ValueError(
                f"retention_keep_last: expected an int >= 1 or unset, got {self.retention_keep_last}"
            )
        if self.retention_max_age_hours is not None and not self.retention_max_age_hours > 0:
            raise ValueError(
                "retention_max_age_hours: expected a number > 0 or unset, "
                f"got {self.retention_max_age_hours}"
            )
        self._check_ensemble()
        object.__setattr__(self, "log_level", self.log_level.upper())
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level: expected one of {LOG_LEVELS}, got {self.log_level!r}")

    def _check_ensemble(self) -> None:
        if self.ensemble_members < 0:
            raise ValueError(f"ensemble_members: expected an int >= 0, got {self.ensemble_members}")
        self.ensemble_settings()  # ValueError naming the setting that is out of range

    def ensemble_settings(self) -> EnsembleSettings | None:
        """The ensemble's settings (None when `ensemble_members` is 0), on the model grid's
        pixels (the domain's, else 4 km) and the time step."""
        if self.ensemble_members == 0:
            return None
        domain = self.domain
        pixel_km = 4.0
        if domain is not None and domain.extent is not None:
            pixel_km = domain.block * domain.native_pixel_km
        try:
            return EnsembleSettings(
                members=self.ensemble_members,
                thresholds_mm_h=self.probability_thresholds_mm_h,
                write_members=self.ensemble_write_members,
                design=self.ensemble_design,
                noise_gain=self.ensemble_noise_gain,
                pixel_km=pixel_km,
                timestep_minutes=self.timestep_seconds / 60.0,
                seed=self.ensemble_seed,
            )
        except ValueError as e:  # named by its [serve] key
            field, _, rest = str(e).partition(":")
            raise ValueError(f"{_ENSEMBLE_KEYS.get(field, field)}:{rest}") from e

    @property
    def gap_seconds(self) -> float:
        """The largest gap between consecutive scans that keeps the buffer."""
        if self.max_gap_seconds is not None:
            return self.max_gap_seconds
        return 1.5 * self.timestep_seconds

    @property
    def cadence_seconds(self) -> float:
        """How far a scan may be off the timestep grid of the newest buffered scan."""
        if self.cadence_tolerance_seconds is not None:
            return self.cadence_tolerance_seconds
        return 0.1 * self.timestep_seconds

    def require(self, *names: str) -> None:
        """Raise one ConfigError listing every one of `names` that is unset."""
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise missing_error(missing, table="serve", env_prefix=ENV_PREFIX, env_names=ENV_NAMES)

    def served_dirs(self) -> tuple[Path, Path]:
        """(`watch_dir`, `output_dir`), which serving needs; one ConfigError naming those unset."""
        watch, output = self.watch_dir, self.output_dir
        if watch is None or output is None:
            missing = [n for n, v in (("watch_dir", watch), ("output_dir", output)) if v is None]
            raise missing_error(missing, table="serve", env_prefix=ENV_PREFIX, env_names=ENV_NAMES)
        return watch, output


SERVE_SETTINGS = specs(ServeConfig, exclude=("reader", "domain"))


def load_serve_config(
    path: Path | None = None,
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    required: Iterable[str] = (),
) -> ServeConfig:
    """Resolve flag > environment > file > default into one `ServeConfig`.

    `flags` holds `[serve]` keys given on the command line (None: not given), as text or typed.
    `required` settings that end up unset are listed together in one ConfigError.
    """
    doc = read_config(path, "serve")
    values = resolve(
        SERVE_SETTINGS,
        table="serve",
        flags=flags,
        file=doc.get("serve", {}),
        environ=os.environ if environ is None else environ,
        env_prefix=ENV_PREFIX,
        env_names=ENV_NAMES,
        required=required,
    )
    reader, domain = scan_settings(doc)
    try:
        return ServeConfig(**values, reader=reader, domain=domain)
    except ValueError as e:
        raise ConfigError(str(e)) from e
