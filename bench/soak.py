"""Burst and soak of a real `nowcastd serve` with the tiny test model: resource figures at start
and end.

    python bench/soak.py --scans 2000 --burst 200

A burst of `--burst` scans lands at once (the worker forecasts the newest, counts the rest as
skipped), then `--scans` scans arrive one at a time, each after the previous forecast. Printed
at the start and the end of the soak: RSS, open fds, threads (daemon and its scan reader),
XLA compilations since ready and forecast latency p50/p99 (from the daemon's events file).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nowcastd.io.model_checkpoint import save_inference_checkpoint  # noqa: E402
from nowcastd.io.transform import DataTransform  # noqa: E402
from tests.nowcastd.serve.daemon import Daemon, value  # noqa: E402
from tests.nowcastd.serve.tiny import tiny_network  # noqa: E402


def _proc(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    return {"rss_mb": rss, "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _latencies(d: Daemon) -> list[float]:
    """Forecast latencies from the daemon's events file (one JSON line per outcome)."""
    return [e["latency_seconds"] for e in d.events() if e["event"] == "forecast"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(label: str, d: Daemon, latencies: list[float]) -> None:
    me = _proc(d.proc.pid)
    readers = [_proc(c) for c in _children(d.proc.pid)]
    metrics = d.metrics()
    compiles = value(metrics, "nowcastd_jit_compilations_total")
    print(
        f"{label:>6}: rss {me['rss_mb']:.0f} MB, fds {me['fds']}, threads {me['threads']}, "
        f"reader rss {sum(r['rss_mb'] for r in readers):.0f} MB, "
        f"compilations {compiles:.0f}, forecasts "
        f"{value(metrics, 'nowcastd_forecasts_written_total'):.0f}, skipped "
        f"{value(metrics, 'nowcastd_scans_skipped_total'):.0f}, latency p50 "
        f"{_percentile(latencies, 0.5) * 1000:.1f} ms p99 {_percentile(latencies, 0.99) * 1000:.1f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=2000)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--window", type=int, default=100, help="latencies per figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nowcastd-soak-") as tmp:
        root = Path(tmp)
        save_inference_checkpoint(root / "ckpt", tiny_network(size=32), DataTransform(kind="dbz"))
        d = Daemon(root)
        d.start()
        try:
            for i in range(args.burst):
                d.write_then_rename(i)
            d.wait_for(
                lambda: (d.out / d.forecasts()[-1]).exists() if d.forecasts() else False,
                120,
                "burst forecast",
            )
            d.wait_received(args.burst)
            print(f"burst: {args.burst} scans, {len(_latencies(d))} forecast(s)", flush=True)
            start = args.burst
            first = len(_latencies(d))
            started = time.monotonic()
            for i in range(start, start + args.scans):
                d.write_then_rename(i)
                d.wait_forecast(i)
                done = i - start + 1
                if done == args.window:
                    report("start", d, _latencies(d)[first:])
            report("end", d, _latencies(d)[-args.window :])
            rate = args.scans / (time.monotonic() - started)
            print(f"soak: {args.scans} scans, {rate:.1f} scans/s", flush=True)
        finally:
            d.proc.terminate()
            d.proc.wait(timeout=30)


if __name__ == "__main__":
    main()
