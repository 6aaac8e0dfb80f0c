"""Tell file formats apart by content, never by file extension.

`sniff` is the one rule for the container (NumPy, HDF5, zip); radar scans (`detect_format`
here), training data (`nowcastd.data.loader`) and official checkpoints
(`nowcastd.io.torch_import`) each look inside it for what they need. For radar scans:

- HDF5 (signature `\\x89HDF\\r\\n\\x1a\\n` at byte 0, 512, 1024, ...): "odim" if the root
  attribute `Conventions` starts with `ODIM_H5`, else "knmi" if the dataset
  `image1/image_data` exists; any other HDF5 file is rejected.
- NumPy (`\\x93NUMPY` at byte 0): "npy".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import h5py

from nowcastd.errors import UnknownFormatError
from nowcastd.io.readers.guard import (
    DEFAULT_POLICY,
    ReadPolicy,
    open_hdf5,
    open_scan,
    printable,
    refusing,
)
from nowcastd.io.readers.scan import as_text

__all__ = ["detect_format", "detected", "sniff"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)


def sniff(path: Path, policy: ReadPolicy | None = None) -> str | None:
    """The container from the first bytes: "npy", "hdf5", "zip" (.npz too) or None.

    Raises OSError when the file cannot be read; with a `policy`, the file is opened by
    `guard.open_scan` (ScanRefused for a FIFO, a symlink, ...).
    """
    opened = Path(path).open("rb") if policy is None else open_scan(Path(path), policy)  # noqa: SIM115
    with opened as f:
        head = f.read(8)
        if head.startswith(NPY_MAGIC):
            return "npy"
        if head.startswith(ZIP_MAGIC):
            return "zip"
        for offset in _HDF5_OFFSETS:
            f.seek(offset)
            if f.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
                return "hdf5"
    return None


def _hdf5_kind(path: Path, h: h5py.File) -> str:
    conventions = h.attrs.get("Conventions")
    if conventions is not None and as_text(conventions).startswith("ODIM_H5"):
        return "odim"
    if isinstance(h.get("image1/image_data"), h5py.Dataset):
        return "knmi"
    found = repr(as_text(conventions)) if conventions is not None else "no Conventions"
    raise UnknownFormatError(
        f"{printable(path.name)}: expected ODIM_H5 (Conventions 'ODIM_H5/...') or KNMI HDF5 "
        f"(image1/image_data), got an HDF5 file with {found} and neither"
    )


@contextmanager
def detected(
    path: str | Path, policy: ReadPolicy = DEFAULT_POLICY
) -> Iterator[tuple[str, h5py.File | None]]:
    """`detect_format`'s format of `path` and, for an HDF5 format, the file as `open_hdf5`
    opened it under `policy` (checked), open for reading in the block: a scan is opened once
    for detecting and reading. ScanError (ScanRefused) as `detect_format`, for anything
    raised while detecting or in the block."""
    path = Path(path)
    with ExitStack() as stack:
        # the boundary of detecting and of reading in the block, closing the file included
        stack.enter_context(refusing(path, "an HDF5 (ODIM_H5 or KNMI) or .npy scan"))
        container = sniff(path, policy)
        if container == "npy":
            found: tuple[str, h5py.File | None] = ("npy", None)
        elif container == "hdf5":
            h = stack.enter_context(open_hdf5(path, policy))
            found = (_hdf5_kind(path, h), h)
        else:
            with open_scan(path, policy) as f:
                head = f.read(8)
            raise UnknownFormatError(
                f"{printable(path.name)}: expected an HDF5 (ODIM_H5 or KNMI) or .npy file, "
                f"got content starting with {head!r}"
            )
        yield found


def detect_format(path: str | Path, policy: ReadPolicy = DEFAULT_POLICY) -> str:
    """Return "odim", "knmi" or "npy" from the file's content; ScanError otherwise."""
    with detected(path, policy) as (fmt, _):
        return fmt
