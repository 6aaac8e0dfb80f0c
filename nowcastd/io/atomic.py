"""Atomic writes, and the names a reader of a watched directory skips.

Every file or directory nowcastd writes (forecast files, figures, checkpoints, clip files and
their sidecars) is written under a hidden temporary name in the target directory, fsynced, then
renamed into place with `os.replace`, and the directory is fsynced: a reader never sees half of
one. Files and directories are created with the process umask applied (0644 and 0755 under the
usual 022, 0640 and 0750 under systemd's `UMask=0027`), unlike `tempfile.mkstemp`'s 0600.
The temporary names (`.<name>.<random>.tmp`) match `IGNORED_PATTERNS`, which the scan
watcher and every directory listing use, so an unfinished file is never taken for a scan.
"""

import fnmatch
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = [
    "IGNORED_PATTERNS",
    "atomic_directory",
    "atomic_file",
    "atomic_path",
    "fsync_path",
    "is_ignored_name",
]

IGNORED_PATTERNS = (".*", "*.tmp", "*.part", "*~")


def is_ignored_name(name: str) -> bool:
    """True for hidden and temporary names (`.*`, `*.tmp`, `*.part`, `*~`)."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED_PATTERNS)


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by path (a directory fsync makes a rename durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(final: Path, suffix: str, create: Callable[[Path], object]) -> Path:
    """A new `.<name>.<random><suffix>` beside `final`, made by `create(path)` (umask applies)."""
    while True:
        path = final.parent / f".{final.name}.{secrets.token_hex(4)}{suffix}"
        try:
            create(path)
        except FileExistsError:
            continue
        return path


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _new_directory(path: Path) -> None:
    os.mkdir(path, 0o777)


def _fsync_tree(path: Path) -> None:
    if path.is_dir():
        for entry in path.iterdir():
            _fsync_tree(entry)
    fsync_path(path)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside `final` to write by name; it becomes `final` if the block succeeds.

    For writers that open the file themselves (h5py). On an exception the temporary file is
    removed and `final` is untouched.
    """
    final = Path(final)
    tmp = _temporary(final, ".tmp", _new_file)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(final.parent)


@contextmanager
def atomic_file(final: Path) -> Iterator[IO[bytes]]:
    """A binary file object whose content appears at `final` only if the block succeeds."""
    with atomic_path(final) as tmp, open(tmp, "wb") as f:
        yield f


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """An empty temporary directory beside `final`; it replaces `final` if the block succeeds.

    Every file in it is fsynced before the rename. An existing `final` is moved aside, replaced
    and then deleted, so at every moment `final` is either the old or the new directory.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(final, ".tmp", _new_directory)
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            old = _temporary(final, ".old", _new_directory)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(final.parent)
