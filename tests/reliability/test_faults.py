"""The real daemon under faults: start-up errors, SIGKILL during writes, a file-size limit on
its writes, its watch directory replaced, and a stalled worker under the systemd watchdog."""

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nowcastd.io.model_checkpoint import save_inference_checkpoint
from nowcastd.io.transform import DataTransform
from tests.nowcastd.serve.daemon import NATIVE, Daemon, value
from tests.nowcastd.serve.tiny import tiny_network
from tests.paths import REPO
from tests.reliability.hostile import _odim

WRITE_FAILURES = ("nowcastd_failures_total", {"stage": "write"})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "ckpt"
    save_inference_checkpoint(path, tiny_network(size=32), DataTransform(kind="dbz"))
    return path


def _daemon(root: Path, checkpoint: Path, extra: str = "", env=None) -> Daemon:
    os.symlink(checkpoint, root / "ckpt")
    return Daemon(root, extra=extra, env=env)


@contextlib.contextmanager
def _running(root: Path, checkpoint: Path, extra: str = "", env=None) -> Iterator[Daemon]:
    """A started daemon, killed on the way out whatever happened."""
    d = _daemon(root, checkpoint, extra=extra, env=env)
    d.start()
    try:
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def _serve(config: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "nowcastd.cli", "serve", "--config", str(config), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def _one_line_error(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], result.stderr


def test_start_up_errors_are_one_line_and_exit_1(tmp_path, checkpoint):
    d = _daemon(tmp_path, checkpoint)
    _one_line_error(_serve(d.config, "--metrics-addr", ""), "metrics_addr")
    _one_line_error(
        _serve(d.config, "--watch-dir", str(tmp_path / "absent")), "expected a directory"
    )
    _one_line_error(_serve(d.config, "--output-dir", str(d.incoming)), "overlapping")
    _one_line_error(_serve(d.config, "--output-dir", str(d.incoming / "out")), "overlapping")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    _one_line_error(_serve(d.config, "--output-dir", str(a_file)), "expected a directory")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", d.port))
        busy.listen()
        _one_line_error(_serve(d.config), "cannot listen")
    weights = [p for p in checkpoint.iterdir() if p.name != "meta.json"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_bytes((checkpoint / "meta.json").read_bytes())
    for p in weights:
        (broken / p.name).write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _one_line_error(_serve(d.config, "--checkpoint", str(broken)), "cannot load checkpoint")
    _one_line_error(
        _serve(d.config, "--checkpoint", str(tmp_path / "none")), "no nowcastd checkpoint"
    )


def test_sigkill_during_writes_leaves_no_litter_and_forecasts_after_restart(tmp_path, checkpoint):
    with _running(tmp_path, checkpoint) as d:
        for i in range(3):
            d.write_then_rename(i)
        d.wait_forecast(2)
        i = 3
        for delay in (0.0, 0.05, 0.15):
            d.write_then_rename(i)
            time.sleep(delay)
            d.proc.kill()
            d.proc.wait()
            # what a kill between write and rename leaves
            (d.out / f".forecast_x{i}.h5.abc123.tmp").write_bytes(b"half")
            d.start()
            assert not [n for n in os.listdir(d.out) if n.endswith(".tmp")]
            i += 1
            d.write_then_rename(i)
            d.wait_forecast(i)
            i += 1


def test_file_size_limit_fails_writes_cleanly_and_recovers(tmp_path, checkpoint):
    with _running(tmp_path, checkpoint) as d:
        for i in range(3):
            d.write_then_rename(i)
        d.wait_forecast(2)
        soft, hard = resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (4096, hard))  # a forecast is larger
        d.write_then_rename(3)
        d.wait_for(
            lambda: value(d.metrics(), WRITE_FAILURES[0], **WRITE_FAILURES[1]) == 1, 30, "failure"
        )
        assert not (d.out / "forecast_20260101T001500Z.h5").exists()
        assert not [n for n in os.listdir(d.out) if n.endswith(".tmp")]
        failed = [(e["stage"], e["reason"]) for e in d.events() if e["event"] == "failed"]
        assert failed == [("write", "error")]  # an error the stage names, not an internal one
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (soft, hard))  # space returns
        d.write_then_rename(4)
        d.wait_forecast(4)
        assert d.proc.poll() is None


def test_replaced_watch_dir_is_detected_counted_and_served(tmp_path, checkpoint):
    with _running(tmp_path, checkpoint) as d:
        d.write_then_rename(0)
        d.wait_for(lambda: value(d.metrics(), "nowcastd_buffer_frames") == 1, 30, "buffered")
        os.rename(d.incoming, tmp_path / "old-incoming")  # a deploy script swaps it
        d.wait_for(lambda: value(d.metrics(), "nowcastd_watch_dir_present") == 0, 10, "missing")
        d.incoming.mkdir()
        d.wait_for(lambda: value(d.metrics(), "nowcastd_watch_dir_rearms_total") == 1, 10, "rearm")
        assert value(d.metrics(), "nowcastd_watch_dir_present") == 1
        for i in (1, 2):
            d.write_then_rename(i)
        d.wait_forecast(2)
        assert "was replaced; watching the new one" in d.log_text()


def test_a_stalled_worker_stops_the_watchdog_pings_until_it_progresses(tmp_path, checkpoint):
    # An HDF5 file whose data lies in a FIFO (allowed here) blocks its reader for the time limit.
    extra = "allow_hdf5_external = true\nread_timeout_seconds = 6\nstall_seconds = 1\n"
    with _running(tmp_path, checkpoint, extra=extra, env={"WATCHDOG_USEC": "400000"}) as d:
        os.mkfifo(tmp_path / "pipe")
        _odim(d.staging / "stall.h5", 0)
        import h5py
        import numpy as np

        with h5py.File(d.staging / "stall.h5", "a") as h:
            del h["dataset1/data1/data"]
            h["dataset1/data1"].create_dataset(
                "data",
                shape=(NATIVE, NATIVE),
                dtype=np.uint8,
                external=[(str(tmp_path / "pipe"), 0, NATIVE**2)],
            )
        sent = time.monotonic()
        os.rename(d.staging / "stall.h5", d.incoming / "stall.h5")
        d.wait_for(
            lambda: value(d.metrics(), "nowcastd_scans_rejected_total", reason="timeout") == 1,
            30,
            "timeout",
        )
        time.sleep(1.0)  # progressing again: pings resume
        pings = [t for t, m in d.stamps if m == "WATCHDOG=1" and t > sent]
        gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
        assert max(gaps) > 3.0, gaps  # withheld while stalled (pings otherwise every 0.2 s)
        assert pings[-1] - pings[-2] < 1.0  # and resumed
        assert value(d.metrics(), "nowcastd_watchdog_withheld_total") >= 1
        assert "worker stalled" in d.log_text()
        for i in range(3):
            d.write_then_rename(i)
        d.wait_forecast(2)
        after = time.monotonic()
        time.sleep(1.0)
        assert any(t > after and m == "WATCHDOG=1" for t, m in d.stamps)  # pinging again
