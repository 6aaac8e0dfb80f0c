"""`ServeConfig`: the typed configuration of `nowcastd serve` and `nowcastd predict`.

Resolved once, at the command line, in this order: command-line flag, then environment
(`NOWCASTD_<KEY>`, e.g. `NOWCASTD_METRICS_PORT=9811`; the systemd units set
`NOWCASTD_COMPILE_CACHE`), then the TOML file (`[serve]`, `[reader]`, `[domain]` as in
`deploy/config.example.toml`), then the defaults below. Nothing past `load_serve_config` sees
a string where a number or a bool belongs.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nowcastd.errors import ConfigError
from nowcastd.io.domain import Domain
from nowcastd.io.readers import FORMATS

__all__ = ["ENV_ALIASES", "ReaderConfig", "ServeConfig", "load_serve_config"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Environment names that are not simply NOWCASTD_<KEY>.
ENV_ALIASES = {"compile_cache_dir": "NOWCASTD_COMPILE_CACHE"}


@dataclass(frozen=True, kw_only=True)
class ReaderConfig:
    """How scan files are read (`[reader]`)."""

    format: str = "auto"
    zr_a: float = 200.0
    zr_b: float = 1.6
    npy_time_pattern: str | None = None
    npy_time_format: str | None = None

    def __post_init__(self) -> None:
        if self.format != "auto" and self.format not in FORMATS:
            raise ValueError(
                f"reader.format: expected 'auto' or one of {FORMATS}, got {self.format!r}"
            )
        for name in ("zr_a", "zr_b"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"reader.{name}: expected a finite number > 0, got {value!r}")
        if (self.npy_time_pattern is None) != (self.npy_time_format is None):
            raise ValueError(
                "reader.npy_time_pattern and npy_time_format: expected both or neither, got "
                f"{self.npy_time_pattern!r} and {self.npy_time_format!r}"
            )


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """Everything `nowcastd serve` needs (`[serve]` keys plus the reader and the domain).

    `lead_frames=None` means the model's `total_length - input_length`; `max_gap_seconds=None`
    means 1.5 x `timestep_seconds`; `domain=None` means the scan grid is the model grid;
    `retention_keep_last` or `retention_max_age_hours` None (or 0 in a file) means no limit.
    """

    watch_dir: Path | None = None
    output_dir: Path | None = None
    checkpoint: Path | None = None
    metrics_addr: str = "127.0.0.1"
    metrics_port: int = 9810
    lead_frames: int | None = None
    timestep_seconds: float = 300.0
    max_gap_seconds: float | None = None
    poll: bool = False
    poll_interval_seconds: float = 5.0
    settle_seconds: float = 2.0
    debounce_seconds: float = 0.5
    retention_keep_last: int | None = 288
    retention_max_age_hours: float | None = 24.0
    compile_cache_dir: Path | None = None
    log_level: str = "INFO"
    reader: ReaderConfig = ReaderConfig()
    domain: Domain | None = None

    def __post_init__(self) -> None:
        for name in ("watch_dir", "output_dir", "checkpoint", "compile_cache_dir"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if not (0 <= self.metrics_port <= 65535):
            raise ValueError(f"metrics_port: expected 0..65535, got {self.metrics_port}")
        if self.lead_frames is not None and self.lead_frames < 1:
            raise ValueError(f"lead_frames: expected an int >= 1 or unset, got {self.lead_frames}")
        positive = ("timestep_seconds", "poll_interval_seconds", "max_gap_seconds")
        for name in positive:
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
        for name in ("settle_seconds", "debounce_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
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
        object.__setattr__(self, "log_level", self.log_level.upper())
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level: expected one of {LOG_LEVELS}, got {self.log_level!r}")

    @property
    def gap_seconds(self) -> float:
        """The largest gap between consecutive scans that keeps the buffer."""
        if self.max_gap_seconds is not None:
            return self.max_gap_seconds
        return 1.5 * self.timestep_seconds

    def require(self, *names: str) -> None:
        """Raise ConfigError naming the first of `names` that is unset."""
        for name in names:
            if getattr(self, name) is None:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"{name}: expected a value ([serve] {name} in the config file, "
                    f"{flag} or {ENV_ALIASES.get(name, 'NOWCASTD_' + name.upper())}), got none"
                )


_SERVE_KEYS = tuple(
    f.name for f in dataclasses.fields(ServeConfig) if f.name not in ("reader", "domain")
)
_READER_KEYS = tuple(f.name for f in dataclasses.fields(ReaderConfig))
_DOMAIN_KEYS = tuple(f.name for f in dataclasses.fields(Domain))


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(hint: Any) -> tuple[type, bool]:
    """(the non-None type, whether None is allowed) of an annotation like `int | None`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _coerce(name: str, value: Any, hint: Any, *, from_text: bool) -> Any:
    """`value` as the field's type; text (environment) is parsed, TOML values are checked."""
    kind, optional = _base_type(hint)
    if value is None or (from_text and optional and value == ""):
        if optional:
            return None
        raise ConfigError(f"{name}: expected a {kind.__name__}, got nothing")
    try:
        if kind is bool:
            if from_text:
                text = str(value).strip().lower()
                if text in ("1", "true", "yes", "on"):
                    return True
                if text in ("0", "false", "no", "off"):
                    return False
            elif isinstance(value, bool):
                return value
            raise ValueError("expected true or false")
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not from_text):
                raise ValueError("expected an integer")
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if kind is Path:
            if not isinstance(value, str | Path):
                raise ValueError("expected a path string")
            return Path(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return value
    except ValueError as e:
        raise ConfigError(f"{name}: {e}, got {value!r}") from e
    raise ConfigError(f"{name}: unsupported type {hint!r}")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e


def toml_section(
    doc: dict[str, Any], name: str, keys: tuple[str, ...], path: Path
) -> dict[str, Any]:
    section = doc.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [{name}] must be a table, got {type(section).__name__}")
    unknown = sorted(set(section) - set(keys))
    if unknown:
        raise ConfigError(f"{path}: [{name}] unknown keys {unknown}; allowed: {sorted(keys)}")
    return dict(section)


def load_serve_config(
    path: Path | None = None,
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServeConfig:
    """Resolve flag > environment > file > default into one `ServeConfig`.

    `flags` holds `[serve]` keys given on the command line (None values are "not given").
    Environment: `NOWCASTD_<KEY>` for every `[serve]` key (see `ENV_ALIASES`).
    """
    import os

    env = os.environ if environ is None else environ
    doc = read_toml(path) if path is not None else {}
    where = path or Path("<no config file>")
    unknown = sorted(set(doc) - {"serve", "reader", "domain"})
    if unknown:
        raise ConfigError(f"{where}: unknown tables {unknown}; allowed: serve, reader, domain")
    serve = toml_section(doc, "serve", _SERVE_KEYS, where)
    reader = toml_section(doc, "reader", _READER_KEYS, where)
    domain = toml_section(doc, "domain", _DOMAIN_KEYS, where)

    hints = _field_types(ServeConfig)
    values: dict[str, Any] = {}
    for key in _SERVE_KEYS:
        env_name = ENV_ALIASES.get(key, f"NOWCASTD_{key.upper()}")
        if flags is not None and flags.get(key) is not None:
            values[key] = _coerce(
                f"--{key.replace('_', '-')}", flags[key], hints[key], from_text=False
            )
        elif env_name in env:
            values[key] = _coerce(env_name, env[env_name], hints[key], from_text=True)
        elif key in serve:
            values[key] = _coerce(f"[serve] {key}", serve[key], hints[key], from_text=False)
    reader_hints = _field_types(ReaderConfig)
    reader_values = {
        k: _coerce(f"[reader] {k}", v, reader_hints[k], from_text=False) for k, v in reader.items()
    }
    try:
        if domain:
            if "native_shape" in domain:
                domain["native_shape"] = tuple(domain["native_shape"])
            values["domain"] = Domain(**domain)
        values["reader"] = ReaderConfig(**reader_values)
        return ServeConfig(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e
