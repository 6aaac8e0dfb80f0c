"""Radar scan readers: one module per format, one `Scan` out of all of them.

scan = read_scan(path)            # format detected from the content
scan.field                        # float32 (H, W) mm/h, NaN = no data
scan.valid_time                   # aware UTC datetime (end of accumulation)
"""

from __future__ import annotations

from pathlib import Path

from nowcastd.io.readers.detect import detect_format, detected
from nowcastd.io.readers.guard import DEFAULT_POLICY, ReadPolicy, ScanRefused, printable
from nowcastd.io.readers.knmi import read_knmi
from nowcastd.io.readers.npy import read_npy
from nowcastd.io.readers.odim import read_odim
from nowcastd.io.readers.scan import GridInfo, Scan

__all__ = [
    "FORMATS",
    "GridInfo",
    "ReadPolicy",
    "Scan",
    "ScanRefused",
    "detect_format",
    "printable",
    "read_scan",
]

FORMATS: tuple[str, ...] = ("odim", "knmi", "npy")


def read_scan(
    path: str | Path,
    *,
    fmt: str = "auto",
    zr_a: float = 200.0,
    zr_b: float = 1.6,
    npy_time_pattern: str | None = None,
    npy_time_format: str | None = None,
    policy: ReadPolicy = DEFAULT_POLICY,
) -> Scan:
    """Read one radar file into a `Scan`.

    `fmt` is "auto" (detect from content) or one of `FORMATS`. `zr_a`, `zr_b` are the Z = a R^b
    coefficients for reflectivity inputs. `npy_time_pattern`/`npy_time_format` override how a
    .npy file's valid time is taken from its name. `policy` bounds what the file may be
    (`guard`). Raises `ScanError` naming the file (`ScanRefused` with a reason label).
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"fmt: expected 'auto' or one of {FORMATS}, got {fmt!r}")
    if not (zr_a > 0 and zr_b > 0):
        raise ValueError(f"zr_a, zr_b: expected positive numbers, got {zr_a!r}, {zr_b!r}")
    path = Path(path)
    if fmt == "auto":
        with detected(path, policy) as (found, opened):
            if found == "odim":
                return read_odim(path, zr_a=zr_a, zr_b=zr_b, policy=policy, opened=opened)
            if found == "knmi":
                return read_knmi(path, zr_a=zr_a, zr_b=zr_b, policy=policy, opened=opened)
        fmt = found
    if fmt == "odim":
        return read_odim(path, zr_a=zr_a, zr_b=zr_b, policy=policy)
    if fmt == "knmi":
        return read_knmi(path, zr_a=zr_a, zr_b=zr_b, policy=policy)
    return read_npy(path, time_pattern=npy_time_pattern, time_format=npy_time_format, policy=policy)
