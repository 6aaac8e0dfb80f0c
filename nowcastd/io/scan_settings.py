"""How scans are read and cut: the `[reader]` and `[domain]` tables of a config file, shared
by `serve`, `predict` and `evaluate` on a scan directory."""

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nowcastd.errors import ConfigError
from nowcastd.io.domain import Domain
from nowcastd.io.readers import FORMATS, Scan, read_scan
from nowcastd.io.readers.guard import DEFAULT_POLICY, ReadPolicy
from nowcastd.settings import read_config, resolve, specs

__all__ = ["ReaderConfig", "read_scan_settings", "scan_settings"]


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

    def read(
        self, path: Path, *, fmt: str | None = None, policy: ReadPolicy = DEFAULT_POLICY
    ) -> Scan:
        """`read_scan` of `path` with these settings and `policy` (what files are refused);
        `fmt` (say, a detected format) overrides `format`."""
        return read_scan(
            path,
            fmt=fmt or self.format,
            zr_a=self.zr_a,
            zr_b=self.zr_b,
            npy_time_pattern=self.npy_time_pattern,
            npy_time_format=self.npy_time_format,
            policy=policy,
        )


def scan_settings(doc: Mapping[str, Mapping[str, Any]]) -> tuple[ReaderConfig, Domain | None]:
    """The `[reader]` and `[domain]` of a config document (`nowcastd.settings.read_config`)."""
    try:
        reader = ReaderConfig(
            **resolve(specs(ReaderConfig), table="reader", file=doc.get("reader", {}))
        )
    except ValueError as e:
        raise ConfigError(f"[reader] {str(e).removeprefix('reader.')}") from e
    table = doc.get("domain")
    if table is None:
        return reader, None
    needed = [f.name for f in dataclasses.fields(Domain) if f.default is dataclasses.MISSING]
    values = resolve(specs(Domain), table="domain", file=table, required=needed)
    try:
        return reader, Domain(**values)
    except ValueError as e:
        raise ConfigError(f"[domain] {str(e).removeprefix('Domain.')}") from e


def read_scan_settings(path: Path | None) -> tuple[ReaderConfig, Domain | None]:
    """The `[reader]` (a ReaderConfig) and `[domain]` (a Domain or None) of a config file."""
    return scan_settings(read_config(path, "evaluate"))
