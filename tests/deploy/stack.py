"""A real `nowcastd serve` (the tiny test model) scraped by a real Prometheus, fed scans whose
valid times are the last minutes of the wall clock, as a radar feed's would be.

The daemon's `[domain]` gives the `.npy` scans the KNMI composite's projection and a 64 km
window of its extent, so its forecasts carry a CF grid mapping. A copy of every scan delivered
stays in `observed/` (the watch directory may be removed by a test).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from nowcastd.io.model_checkpoint import save_inference_checkpoint
from tests.deploy.prometheus import Prometheus, short_for_rules
from tests.nowcastd.serve.daemon import NATIVE, Daemon
from tests.nowcastd.serve.tiny import DBZ, tiny_network
from tests.paths import REPO

KNMI_PROJECTION = (
    "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378137 +b=6356752 +x_0=0 +y_0=0 +units=m"
)
#: 64 x 64 native pixels of 1 km inside the KNMI composite; blocks of 2: a 32 x 32 model grid.
EXTENT = (248_000.0, -3_982_000.0, 312_000.0, -3_918_000.0)
TIMESTEP = timedelta(minutes=5)


def moving_rain(i: int) -> np.ndarray:
    """Scan `i`: a rain cell drifting one pixel east per scan over drizzle, a no-data corner."""
    rows, cols = np.mgrid[0:NATIVE, 0:NATIVE].astype(np.float32)
    cell = 12.0 * np.exp(-((rows - 30) ** 2 + (cols - 12 - i) ** 2) / 60.0)
    field = (cell + np.random.default_rng(i).gamma(0.3, 0.3, cell.shape)).astype(np.float32)
    field[:4, :6] = np.nan
    return field


class LiveStack:
    """The daemon and Prometheus under `root`; `deliver(i)` writes scan `i` of the feed."""

    def __init__(self, root: Path, *, scans: int) -> None:
        self.root = root
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        # The newest scan is the one of the last full timestep: all are in the past.
        self.t0 = now - timedelta(minutes=now.minute % 5) - TIMESTEP * (scans - 1)
        self.observed = root / "observed"
        self.observed.mkdir(parents=True)
        # predict_delta: the untrained network forecasts persistence, so its files hold rain
        network = tiny_network(size=32, predict_delta=True)
        ckpt = save_inference_checkpoint(root / "model", network, DBZ)
        (root / "daemon").mkdir()
        os.symlink(ckpt, root / "daemon" / "ckpt")
        # a small ensemble, so the dashboard's ensemble panel has data
        self.daemon = Daemon(root / "daemon", extra="ensemble_members = 3\n")
        with self.daemon.config.open("a") as f:  # [domain] is the config's last table
            f.write(f'projection = "{KNMI_PROJECTION}"\nextent = {list(EXTENT)}\n')
        rules = [REPO / "deploy" / "alerts.yml", short_for_rules(root / "short_for.yml")]
        self.prometheus = Prometheus(
            root / "prometheus", target=f"127.0.0.1:{self.daemon.port}", rule_files=rules
        )

    def __enter__(self) -> LiveStack:
        try:
            self.daemon.start()
            self.prometheus.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop Prometheus, then the daemon (SIGTERM to each PID; SIGKILL if it hangs)."""
        self.prometheus.stop()
        proc = self.daemon.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def valid_time(self, i: int) -> datetime:
        return self.t0 + TIMESTEP * i

    def scan_name(self, i: int) -> str:
        return f"scan_{self.valid_time(i):%Y%m%d%H%M}.npy"

    def forecast(self, i: int) -> Path:
        """Where the forecast issued at scan `i` is written."""
        return self.daemon.out / f"forecast_{self.valid_time(i):%Y%m%dT%H%M%SZ}.h5"

    def wait_scraped(self, metric: str, value: float, timeout: float = 30.0) -> None:
        """Until Prometheus' newest sample of `metric` is `value`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if [float(s["value"][1]) for s in self.prometheus.query(metric)] == [value]:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{metric} never scraped as {value}: {self.prometheus.query(metric)}")

    def deliver(self, i: int) -> Path:
        """Scan `i` into the watch directory under a hidden name, then renamed; a copy kept."""
        buffer = io.BytesIO()
        np.save(buffer, moving_rain(i))
        (self.observed / self.scan_name(i)).write_bytes(buffer.getvalue())
        incoming = self.daemon.incoming
        tmp = incoming / f".{self.scan_name(i)}.tmp"
        tmp.write_bytes(buffer.getvalue())
        os.rename(tmp, incoming / self.scan_name(i))
        return incoming / self.scan_name(i)

    def deliver_damaged(self, i: int) -> None:
        """A file with scan `i`'s time in its name that is no scan (a truncated transfer)."""
        tmp = self.daemon.incoming / ".damaged.tmp"
        tmp.write_bytes(b"\x93NUMPY\x01\x00garbage")
        os.rename(tmp, self.daemon.incoming / f"damaged_{self.scan_name(i)}")
