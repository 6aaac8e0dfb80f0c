"""A real `nowcastd serve` subprocess on a tmp directory, its files, metrics and sd_notify
messages: shared by the serve tests and tests/reliability."""

import io
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from nowcastd.demo.driver import DaemonProcess, free_port
from nowcastd.demo.metrics import scrape
from tests.paths import REPO

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NATIVE = 64  # native grid; the domain block-averages it 2 x 2 to the model's 32 x 32 (or `block`)
CONFIG = """\
[serve]
watch_dir = "{root}/incoming"
output_dir = "{root}/forecasts"
checkpoint = "{root}/ckpt"
metrics_port = {port}
timestep_seconds = 300
debounce_seconds = 0.1
settle_seconds = 0.5
retention_keep_last = 100
retention_max_age_hours = 0
refill_max_age_hours = 0
events_file = "{root}/events.jsonl"
{extra}
[domain]
native_shape = [{n}, {n}]
row0 = {crop}
col0 = {crop}
height = {side}
width = {side}
block = {block}
"""


def _scan_name(i: int) -> str:
    return f"scan_{(T0 + timedelta(minutes=5 * i)):%Y%m%d%H%M}.npy"


def _scan_bytes(i: int, shape: tuple[int, int] = (NATIVE, NATIVE)) -> bytes:
    rng = np.random.default_rng(i)
    field = rng.gamma(0.6, 3.0, shape).astype(np.float32)
    field[:4, :6] = np.nan  # no data in a corner: the NaN rule applies
    out = io.BytesIO()
    np.save(out, field)
    return out.getvalue()


class Daemon:
    """Paths, the subprocess (`nowcastd.demo.driver.DaemonProcess`, its log appended to across
    restarts), and the sd_notify messages it sent."""

    def __init__(
        self,
        root: Path,
        *,
        extra: str = "",
        env: dict[str, str] | None = None,
        block: int = 2,
        crop: int = 0,
    ) -> None:
        """`crop`: the native pixels left out on every side of the domain's window."""
        self.root = root
        self.incoming = root / "incoming"
        self.out = root / "forecasts"
        self.staging = root / "staging"
        for d in (self.incoming, self.staging):
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = root / "serve.toml"
        self.config.write_text(
            CONFIG.format(
                root=root,
                port=self.port,
                n=NATIVE,
                extra=extra,
                block=block,
                crop=crop,
                side=NATIVE - 2 * crop,
            )
        )
        self.env = dict(env or {})
        self.driver: DaemonProcess | None = None
        self.messages: list[str] = []
        self.stamps: list[tuple[float, str]] = []  # (time.monotonic(), message)

    @property
    def proc(self) -> subprocess.Popen | None:
        """The daemon process of the last `start` (None before)."""
        return None if self.driver is None else self.driver.process

    def start(self) -> None:
        address = f"@nowcastd-test-{uuid.uuid4().hex}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind("\0" + address[1:])
        sock.settimeout(0.2)
        self.messages = []
        self.stamps = []

        def listen(process: subprocess.Popen) -> None:
            while process.poll() is None:
                try:
                    message = sock.recv(4096).decode()
                    self.messages.append(message)
                    self.stamps.append((time.monotonic(), message))
                except TimeoutError:
                    continue
            sock.close()

        env = dict(os.environ, NOTIFY_SOCKET=address, WATCHDOG_USEC="2000000", JAX_PLATFORMS="cpu")
        env.update(self.env)
        env["NOWCASTD_COMPILE_CACHE"] = str(self.root / "cache")  # the restart loads from it
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.driver = DaemonProcess(
            self.config,
            metrics_port=self.port,
            log_path=self.root / "serve.log",
            env=env,
            append_log=True,
        )
        threading.Thread(target=listen, args=(self.driver.process,), daemon=True).start()
        self.wait_for(lambda: any("READY=1" in m for m in self.messages), 120, "READY=1")

    def wait_for(self, check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"{what} did not happen; log:\n{self.log_text()}")

    def log_text(self) -> str:
        return (self.root / "serve.log").read_text(errors="replace")

    def events(self) -> list[dict]:
        """Every event line the daemon wrote (`events_file`), as JSON objects."""
        path = self.root / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def forecasts(self) -> list[str]:
        return sorted(p.name for p in self.out.glob("forecast_*.h5")) if self.out.exists() else []

    def wait_forecast(self, i: int) -> Path:
        name = f"forecast_{(T0 + timedelta(minutes=5 * i)):%Y%m%dT%H%M%SZ}.h5"
        self.wait_for(lambda: (self.out / name).exists(), 30, name)
        return self.out / name

    def wait_received(self, n: int) -> None:
        def received() -> bool:
            return value(self.metrics(), "nowcastd_scans_received_total") >= n

        self.wait_for(received, 30, f"{n} scans received")

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """One scrape, by (sample name, sorted labels)."""
        families = scrape(f"http://127.0.0.1:{self.port}/metrics")
        return {
            (name, tuple(sorted(labels.items()))): sample
            for family in families.values()
            for name, labels, sample in family["samples"]
        }

    # Three ways a feed delivers a file.
    def write_slowly(self, i: int) -> None:
        data = _scan_bytes(i)
        with (self.incoming / _scan_name(i)).open("wb") as f:
            for chunk in (data[:100], data[100:5000], data[5000:]):
                f.write(chunk)
                f.flush()
                time.sleep(0.15)

    def write_then_rename(self, i: int, data: bytes | None = None) -> None:
        tmp = self.incoming / f".{_scan_name(i)}.tmp"
        tmp.write_bytes(_scan_bytes(i) if data is None else data)
        os.rename(tmp, self.incoming / _scan_name(i))

    def move_in(self, i: int) -> None:
        src = self.staging / _scan_name(i)
        src.write_bytes(_scan_bytes(i))
        os.rename(src, self.incoming / _scan_name(i))


def value(metrics, name, **labels) -> float:
    return metrics[(name, tuple(sorted(labels.items())))]
