"""Scans read in a worker process that can be killed: a hostile file costs a read, never the daemon.

h5py holds one process-wide lock and cannot be interrupted, so a read that blocks (an HDF5
file whose data lies in a FIFO) or allocates without bound would block or kill the whole
daemon. `ReadWorker.read` sends the path to a long-lived child (`python -m
nowcastd.serve.read_worker`), which reads it with `nowcastd.io.readers.read_scan` under an
address-space limit (`RLIMIT_AS`). Whatever Python raises in the child while it reads one file
is that file's refusal, answered like any other (`corrupt` if the reader did not name a
reason); the child goes on. Only a death outside Python restarts it: a read that takes longer
than the time limit gets the child killed and `ScanRefused("timeout")`; a child that dies (a
crash in a C library, the memory limit) gives `ScanRefused("reader_crashed")`. Either way the
next read starts a new child.

Protocol, no pickle: one JSON line per request; per answer a 4-byte big-endian length, a JSON
header of that length and, for a scan, the field's raw float32 bytes (C order).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import resource
import select
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from nowcastd.errors import ScanError, UnknownFormatError
from nowcastd.io.readers import GridInfo, ReadPolicy, Scan, ScanRefused, printable
from nowcastd.io.scan_settings import ReaderConfig

__all__ = ["ReadWorker"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ReadWorker:
    """One child process that reads scans; `read` is bounded by `timeout_seconds`."""

    def __init__(self, *, timeout_seconds: float, memory_limit_bytes: int) -> None:
        self.timeout_seconds = timeout_seconds
        self.memory_limit_bytes = memory_limit_bytes
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0  # children started, for the log and the tests

    def start(self) -> None:
        """Start the child now (else the first read does)."""
        if self._proc is not None and self._proc.poll() is not None:
            self.close()  # died between reads: its pipes are closed before a new one starts
        if self._proc is None:
            cmd = [sys.executable, "-m", "nowcastd.serve.read_worker", str(self.memory_limit_bytes)]
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.started += 1
            logger.debug("scan reader process %d started", self._proc.pid)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()

    def read(self, path: Path, reader: ReaderConfig, policy: ReadPolicy) -> Scan:
        """The scan at `path`, read by the child; ScanError (ScanRefused) if refused."""
        self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        request = {
            "path": os.fsencode(path).hex(),
            "reader": dataclasses.asdict(reader),
            "policy": {
                **dataclasses.asdict(policy),
                "symlinks_within": None
                if policy.symlinks_within is None
                else os.fsencode(policy.symlinks_within).hex(),
            },
        }
        name = printable(Path(path).name)
        deadline = time.monotonic() + self.timeout_seconds
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
            size = int.from_bytes(_read_exact(proc.stdout, 4, deadline), "big")
            header = json.loads(_read_exact(proc.stdout, size, deadline))
            if not header["ok"]:
                raise _error(header)
            shape = tuple(header["shape"])
            payload = _read_exact(proc.stdout, 4 * shape[0] * shape[1], deadline)
        except TimeoutError:
            self.close()
            raise ScanRefused(
                "timeout",
                f"{name}: expected a read within {self.timeout_seconds:g} s; reader stopped",
            ) from None
        except (EOFError, BrokenPipeError):
            returncode = proc.wait()
            self.close()
            raise ScanRefused(
                "reader_crashed", f"{name}: the reader process died (exit status {returncode})"
            ) from None
        field = np.frombuffer(payload, dtype=np.float32).reshape(shape).copy()
        grid = header["grid"]
        return Scan(
            field=field,
            valid_time=datetime.fromisoformat(header["valid_time"]),
            grid=GridInfo(**{**grid, "shape": tuple(grid["shape"])}),
            path=Path(path),
            source_format=header["source_format"],
        )


def _error(header: dict[str, Any]) -> ScanError:
    if header["unknown_format"]:
        return UnknownFormatError(header["message"])
    return ScanRefused(header["reason"] or ScanError.reason, header["message"])


def _read_exact(stream: Any, size: int, deadline: float) -> bytes:
    """Exactly `size` bytes from the child's stdout before `deadline`."""
    fd = stream.fileno()
    data = bytearray()
    while len(data) < size:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.read(fd, min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


# -- the child ---------------------------------------------------------------------------------


def _answer(request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    policy_fields = request["policy"]
    within = policy_fields["symlinks_within"]
    policy = ReadPolicy(
        **{**policy_fields, "symlinks_within": None if within is None else _path(within)}
    )
    reader = ReaderConfig(**request["reader"])
    try:
        scan = reader.read(_path(request["path"]), policy=policy)
    except ScanError as e:
        reason = getattr(e, "reason", None)
        unknown = isinstance(e, UnknownFormatError)
        return {"ok": False, "reason": reason, "unknown_format": unknown, "message": str(e)}, b""
    except MemoryError:
        message = f"{printable(_path(request['path']).name)}: needs more memory than allowed"
        return {
            "ok": False,
            "reason": "too_large",
            "unknown_format": False,
            "message": message,
        }, b""
    except Exception as e:  # a Python error is this file's refusal, never this process's death
        logger.exception("reading %s", printable(_path(request["path"]).name))
        message = (
            f"{printable(_path(request['path']).name)}: expected a readable scan, got "
            f"{type(e).__name__}: {printable(str(e))}"
        )
        return {"ok": False, "reason": "corrupt", "unknown_format": False, "message": message}, b""
    field = np.ascontiguousarray(scan.field, dtype=np.float32)
    grid = dataclasses.asdict(scan.grid)
    header = {
        "ok": True,
        "shape": list(field.shape),
        "valid_time": scan.valid_time.isoformat(),
        "grid": grid,
        "source_format": scan.source_format,
    }
    return header, field.tobytes()


def _path(hex_text: str) -> Path:
    return Path(os.fsdecode(bytes.fromhex(hex_text)))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when this process ends
    with contextlib.suppress(OSError, AttributeError):  # die with the daemon, even when blocked
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    limit = int(argv[0])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    for line in stdin:
        header, payload = _answer(json.loads(line))
        text = json.dumps(header).encode()
        stdout.write(len(text).to_bytes(4, "big") + text + payload)
        stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
