"""What a scan file may be before any of its data is read: the reading policy and its checks.

A watched directory is written by others, so every reader goes through these gates:

- `open_scan`: only a regular file is opened (`O_NONBLOCK | O_NOFOLLOW`, then `fstat`), so a
  FIFO, device or directory named like a scan never blocks a read. A symlink is refused unless
  `ReadPolicy.symlinks_within` names a directory its target lies in. A file larger than
  `max_file_bytes` is refused before it is read.
- `open_hdf5`: HDF5 through that one descriptor; external links (to other files), and datasets
  stored outside the file (external raw storage, virtual datasets) are refused unless
  `allow_external` is set, since each of them opens another file, perhaps a FIFO. A file with
  more links (`MAX_LINKS`) or attributes (`MAX_ATTRIBUTES`, `MAX_ATTRIBUTE_BYTES`) than any
  scan has is refused before any of them is read.
- `check_array`: a dataset's declared shape, dtype and chunking are checked against the
  configured grid (or `max_pixels`) before its data is read, so a small file declaring a huge
  array costs nothing; `chunks.check_inflation` bounds what its compressed chunks inflate to.
- `refusing`: the one boundary of each reader. Whatever a file's bytes provoke in h5py, numpy
  or zlib while it is read (a damaged object header, a symbol table that cannot be iterated, a
  named type where a dataset should be, `int(inf)`) becomes that file's
  `ScanRefused("corrupt")` naming what was expected and what went wrong; a `MemoryError`
  becomes `too_large`. Errors of nowcastd's own code (a NameError, say) are not caught.

Each refusal is a `ScanRefused` whose `reason` is a label for `nowcastd_scans_rejected_total`.
`printable` is the one spelling of a file name in logs and files: bytes that are not UTF-8 and
control characters (a newline that would forge a log line) come out escaped.
"""

from __future__ import annotations

import math
import os
import stat
import tokenize
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import h5py
import numpy as np
from h5py import h5a, h5d, h5l

from nowcastd.errors import ScanError

__all__ = [
    "ReadPolicy",
    "ScanRefused",
    "check_array",
    "check_calibration",
    "open_hdf5",
    "open_scan",
    "printable",
    "refusing",
]

#: Largest chunk (elements) of a dataset; a declared chunk is decompressed whole.
_MAX_CHUNK_ELEMENTS = 1 << 24


class ScanRefused(ScanError):
    """A scan refused before or while reading; `reason` labels the rejection metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class ReadPolicy:
    """How far a reader trusts a scan file.

    `expected_shape`: the native grid (H, W); None accepts any. `symlinks_within`: follow a
    symlink only when its target is inside this directory; None refuses symlinks.
    `allow_external`: follow HDF5 external links, external storage and virtual datasets.
    `max_abs_gain`, `max_abs_offset`: bounds of a plausible calibration. `max_pixels`: the
    largest grid read when `expected_shape` is None.
    """

    expected_shape: tuple[int, int] | None = None
    symlinks_within: Path | None = None
    allow_external: bool = False
    max_file_bytes: int = 1 << 30
    max_abs_gain: float = 1000.0
    max_abs_offset: float = 10000.0
    max_pixels: int = 1 << 24

    def __post_init__(self) -> None:
        if self.expected_shape is not None:
            object.__setattr__(self, "expected_shape", tuple(int(n) for n in self.expected_shape))
        if self.symlinks_within is not None:
            object.__setattr__(self, "symlinks_within", Path(self.symlinks_within))
        for name in ("max_file_bytes", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {getattr(self, name)}")
        for name in ("max_abs_gain", "max_abs_offset"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROL.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def printable(name: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """`name` as one safe line: undecodable bytes as `\\xff`, control characters escaped."""
    text = os.fspath(name) if isinstance(name, os.PathLike) else name
    if isinstance(text, str):
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
            raw = text.encode("utf-8", "backslashreplace")
    else:
        raw = text
    return raw.decode("utf-8", "backslashreplace").translate(_CONTROL)


def _inside(path: Path, root: Path) -> bool:
    try:
        return os.path.commonpath([path, root]) == str(root)
    except ValueError:
        return False


def open_scan(path: Path, policy: ReadPolicy) -> IO[bytes]:
    """A binary file object on `path`, which must be a regular file the policy allows."""
    name = printable(Path(path).name)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    target = Path(path)
    try:
        if os.path.islink(path):
            root = policy.symlinks_within
            real = Path(os.path.realpath(path))
            if root is None or not _inside(real, Path(os.path.realpath(root))):
                where = "anywhere" if root is None else f"outside {printable(root)}"
                raise ScanRefused(
                    "symlink", f"{name}: expected a regular file, got a symlink to {where}"
                )
            target = real
        fd = os.open(target, flags)
    except ScanRefused:
        raise
    except OSError as e:
        raise ScanError(f"{name}: cannot open: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "directory, device or socket"
            raise ScanRefused("not_regular", f"{name}: expected a regular file, got a {kind}")
        if st.st_size > policy.max_file_bytes:
            raise ScanRefused(
                "too_large",
                f"{name}: expected at most {policy.max_file_bytes} bytes, got {st.st_size}",
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


#: Most links a scan file may hold; a radar product has a few dozen.
MAX_LINKS = 10_000
#: Most attributes, and bytes stored in them, of all the objects of a scan file; a radar
#: product has a few hundred attributes of a few KB in all.
MAX_ATTRIBUTES = 10_000
MAX_ATTRIBUTE_BYTES = 16 << 20


@dataclass
class _Survey:
    """What `_survey` found in a file's links."""

    links: int = 0
    attributes: int = 0
    attribute_bytes: int = 0
    external: list[str] = field(default_factory=list)
    error: Exception | None = None

    def count_attributes(self, oid: h5py.h5o.ObjectID) -> None:
        n = h5a.get_num_attrs(oid)
        self.attributes += n
        if self.attributes <= MAX_ATTRIBUTES:
            self.attribute_bytes += sum(h5a.open(oid, index=i).get_storage_size() for i in range(n))

    @property
    def over(self) -> bool:
        return (
            self.links > MAX_LINKS
            or self.attributes > MAX_ATTRIBUTES
            or self.attribute_bytes > MAX_ATTRIBUTE_BYTES
        )


def _survey(h: h5py.File) -> _Survey:
    """Every link of the file visited once (stopping past the bounds): how many links and
    attributes, and which links leave the file or lead to data outside it."""
    found = _Survey()
    found.count_attributes(h.id)

    def look(text: str, info: h5l.LinkInfo) -> None:
        if info.type == h5l.TYPE_EXTERNAL:
            found.external.append(f"external link {text}")
        elif info.type != h5l.TYPE_HARD and info.type != h5l.TYPE_SOFT:
            found.external.append(f"user-defined link {text}")
        elif info.type == h5l.TYPE_HARD:
            obj = h.get(text)
            if obj is None:
                raise KeyError(f"hard link {text} leads to no object")
            found.count_attributes(obj.id)
            if isinstance(obj, h5py.Dataset):
                plist = obj.id.get_create_plist()
                if plist.get_layout() == h5d.VIRTUAL:
                    found.external.append(f"virtual dataset {text}")
                elif plist.get_external_count() > 0:
                    found.external.append(f"dataset {text} stored in an external file")

    def visit(link: bytes, info: h5l.LinkInfo) -> bool | None:
        found.links += 1
        try:
            look(link.decode("utf-8", "backslashreplace"), info)
        except _DAMAGE as e:  # raised here, h5py would report it as a SystemError
            found.error = e
        return True if found.over or found.error else None  # True stops the visit

    h.id.links.visit(visit, info=True)
    if found.error is not None:
        raise found.error
    return found


def _check_structure(h: h5py.File, name: str, policy: ReadPolicy) -> None:
    """ScanRefused for a file with more links or attributes than any scan has (`too_large`)
    or, unless the policy allows it, a link that leaves the file or data outside it."""
    found = _survey(h)
    if found.over:
        raise ScanRefused(
            "too_large",
            f"{name}: expected at most {MAX_LINKS} HDF5 links and {MAX_ATTRIBUTES} attributes "
            f"of {MAX_ATTRIBUTE_BYTES} bytes in all, got {found.links} links and "
            f"{found.attributes} attributes of {found.attribute_bytes} bytes before stopping",
        )
    problems = found.external
    if problems and not policy.allow_external:
        shown = ", ".join(printable(p) for p in problems[:3])
        raise ScanRefused(
            "external_reference",
            f"{name}: expected an HDF5 file self-contained, got {shown}"
            + (f" and {len(problems) - 3} more" if len(problems) > 3 else ""),
        )


@contextmanager
def open_hdf5(path: Path, policy: ReadPolicy) -> Iterator[h5py.File]:
    """An HDF5 file read through `open_scan`'s descriptor, checked for external references."""
    with open_scan(path, policy) as f, h5py.File(f, "r") as h:
        _check_structure(h, printable(Path(path).name), policy)
        yield h


def check_array(
    name: str,
    what: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    allowed: str,
    policy: ReadPolicy,
    chunks: tuple[int, ...] | None = None,
) -> None:
    """Refuse a declared array before reading it: 2-D, on the expected grid, `dtype.str[1:]`
    in `allowed` (e.g. "u1 u2 f4 f8"), chunks of bounded size."""
    name = printable(name)
    kinds = allowed.split()
    if np.dtype(dtype).str[1:] not in kinds:
        raise ScanRefused(
            "unsupported_dtype",
            f"{name}: expected {what} of type {' or '.join(kinds)}, got {dtype}",
        )
    if len(shape) != 2 or 0 in shape:
        raise ScanRefused("wrong_grid", f"{name}: expected {what} as a 2-D array, got {shape}")
    expected = policy.expected_shape
    if expected is not None and tuple(shape) != expected:
        raise ScanRefused("wrong_grid", f"{name}: expected grid {expected}, got {tuple(shape)}")
    if math.prod(shape) > policy.max_pixels:
        raise ScanRefused(
            "too_large", f"{name}: expected at most {policy.max_pixels} pixels, got {tuple(shape)}"
        )
    if chunks is not None and math.prod(chunks) > max(_MAX_CHUNK_ELEMENTS, math.prod(shape)):
        raise ScanRefused("too_large", f"{name}: expected chunks within the grid, got {chunks}")


def check_calibration(name: str, gain: float, offset: float, policy: ReadPolicy) -> None:
    """Refuse a gain or offset that no radar product uses (0, NaN, 1e30, ...)."""
    if not (
        math.isfinite(gain)
        and math.isfinite(offset)
        and 0 < abs(gain) <= policy.max_abs_gain
        and abs(offset) <= policy.max_abs_offset
    ):
        raise ScanRefused(
            "implausible_calibration",
            f"{printable(name)}: expected 0 < |gain| <= {policy.max_abs_gain:g} and "
            f"|offset| <= {policy.max_abs_offset:g}, got gain {gain!r}, offset {offset!r}",
        )


#: What h5py, numpy and zlib raise on damaged bytes (`refusing`); numpy parses a .npy header
#: as a Python literal, which can raise SyntaxError and tokenize.TokenError.
_DAMAGE = (
    SyntaxError,
    tokenize.TokenError,
    OSError, EOFError, LookupError, ValueError, TypeError, ArithmeticError, RuntimeError,
    AttributeError, zlib.error,
)  # fmt: skip


@contextmanager
def refusing(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """The boundary of a reader: inside it, any error that a file's bytes can provoke becomes
    `ScanRefused` naming the file, `what` it should have been and what went wrong."""
    name = printable(Path(path).name)
    try:
        yield
    except ScanError:
        raise
    except MemoryError as e:
        raise ScanRefused(
            "too_large", f"{name}: expected {what} that fits the reader's memory, got more"
        ) from e
    except _DAMAGE as e:
        raise ScanRefused(
            "corrupt", f"{name}: unreadable (damaged or truncated?): expected {what}, got "
            f"{type(e).__name__}: {printable(str(e))}"
        ) from e  # fmt: skip


#: The default: no symlinks, nothing outside the file, any grid up to `max_pixels`.
DEFAULT_POLICY = ReadPolicy()
