"""Single-frame `.npy` scans: a floating (H, W) array in mm/h, NaN = no data.

The file holds no time, so the valid time comes from the file name. By default it is the first
run of exactly 14 digits (YYYYmmddHHMMSS) or, failing that, of exactly 12 (YYYYmmddHHMM), e.g.
`scan_202608261200.npy`; times are UTC. A custom `time_pattern` (regex; group 1 if it has
groups, else the whole match) and `time_format` (strptime) replace that rule. The grid is known
by shape only.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from nowcastd.io.readers.guard import (
    DEFAULT_POLICY,
    ReadPolicy,
    ScanRefused,
    check_array,
    open_scan,
    printable,
    refusing,
)
from nowcastd.io.readers.scan import GridInfo, Scan

__all__ = ["read_npy", "time_from_name"]

logger = logging.getLogger(__name__)

#: Data types of a `.npy` scan (`dtype.str` without the byte order).
DTYPES = "f4 f8"
_DEFAULT_RULES = (
    (re.compile(r"(?<!\d)(\d{14})(?!\d)"), "%Y%m%d%H%M%S"),
    (re.compile(r"(?<!\d)(\d{12})(?!\d)"), "%Y%m%d%H%M"),
)


def time_from_name(
    name: str, *, time_pattern: str | None = None, time_format: str | None = None
) -> datetime:
    """The UTC valid time encoded in a file name; ValueError if there is none."""
    if (time_pattern is None) != (time_format is None):
        raise ValueError(
            "time_pattern and time_format: expected both or neither, "
            f"got pattern={time_pattern!r}, format={time_format!r}"
        )
    rules: tuple[tuple[re.Pattern[str], str], ...] = _DEFAULT_RULES
    if time_pattern is not None and time_format is not None:
        rules = ((re.compile(time_pattern), time_format),)
    for regex, fmt in rules:
        match = regex.search(name)
        if match is not None:
            text = match.group(1) if regex.groups else match.group(0)
            parsed = datetime.strptime(text, fmt)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
    expected = time_pattern or "a run of 14 or 12 digits (YYYYmmddHHMM[SS])"
    raise ValueError(f"expected a time in the file name matching {expected}, got {name!r}")


_read_header_2_0 = np.lib.format.read_array_header_2_0


def _load(path: Path, policy: ReadPolicy) -> np.ndarray:
    """The array, its header checked (`check_array`) before any data is read."""
    with open_scan(path, policy) as f:
        version = np.lib.format.read_magic(f)
        headers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): _read_header_2_0}
        if version not in headers:
            raise ValueError(f"expected .npy format version 1.0 or 2.0, got {version}")
        shape, _fortran, dtype = headers[version](f)
        check_array(path.name, "the array", shape, dtype, DTYPES, policy)
        f.seek(0)
        return np.lib.format.read_array(f, allow_pickle=False)


def read_npy(
    path: str | Path,
    *,
    time_pattern: str | None = None,
    time_format: str | None = None,
    policy: ReadPolicy = DEFAULT_POLICY,
) -> Scan:
    """Read a float (H, W) mm/h `.npy` frame; the valid time comes from the file name."""
    path = Path(path)
    with refusing(path, "a readable .npy scan"):
        valid_time = time_from_name(path.name, time_pattern=time_pattern, time_format=time_format)
        array = _load(path, policy)
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.dtype.kind != "f":
        raise ScanRefused(
            "unsupported_dtype",
            f"{printable(path.name)}: expected a floating (H, W) array in mm/h, "
            f"got {getattr(array, 'dtype', type(array).__name__)} "
            f"with shape {getattr(array, 'shape', None)}",
        )
    field = np.ascontiguousarray(array, dtype=np.float32)
    logger.debug("read npy %s valid %s", printable(path.name), valid_time.isoformat())
    return Scan(
        field=field,
        valid_time=valid_time,
        grid=GridInfo(shape=field.shape),
        path=path,
        source_format="npy",
    )
