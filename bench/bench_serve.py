"""Benchmark the real `nowcastd serve` daemon: per-scan latency, compilations, memory.

    python bench/bench_serve.py --scans 200 --grid 256 --hidden 16,16

Makes a random model of the given size and `.npy` scans on a `grid` x `grid` domain, starts
`nowcastd serve` on a temporary directory, delivers one scan at a time (write to a hidden
name, rename into place, wait for its forecast), and prints:

- end-to-end latency (file event -> forecast renamed, from the daemon's per-forecast log
  line) p50/p99, and each stage's p50/p99; end-to-end minus rollout (target <= 50 ms p99);
  `queued` is the watcher's debounce plus the wait for the worker, `encode_wait` the wait for
  a pre-encoding still running when the scan landed (0 unless `--no-idle`);
- XLA compilations after ready (target 0) and resident memory after ready and at the end
  (target: flat);
- in-process: the critical-path rollout with pre-encoding (`forecast_from`, K steps) against
  the full rollout (I + K - 1 steps); target ratio <= K / (I + K - 1) + 10 %.

Figures only; nothing is asserted.
"""

import argparse
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LINE = re.compile(r"forecast (\S+) from \S+: latency=(\S+) (.*) pre_encoded=(\w+)")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scans", type=int, default=100, help="scans to deliver")
    p.add_argument("--grid", type=int, default=256, help="model grid (square)")
    p.add_argument("--hidden", default="16,16", help="num_hidden, comma separated")
    p.add_argument("--filter-size", type=int, default=5)
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--input-length", type=int, default=10)
    p.add_argument("--leads", type=int, default=10)
    p.add_argument("--debounce", type=float, default=0.01, help="daemon debounce_seconds")
    p.add_argument("--repeats", type=int, default=10, help="in-process rollout timings")
    p.add_argument("--rss-every", type=int, default=100, help="sample RSS every N scans")
    p.add_argument(
        "--no-idle",
        action="store_true",
        help="deliver the next scan as soon as a forecast is written, while the daemon is still "
        "pre-encoding (default: wait for the pre-encoding, as scans minutes apart do)",
    )
    return p.parse_args()


def _pct(values, q) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _metrics(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name + "".join(f"{{{v}}}" for v in s.labels.values())] = s.value
    return out


def _model(args, root: Path):
    import jax

    from model.config import ModelConfig
    from model.network import PredRNN
    from nowcastd.io.model_checkpoint import save_inference_checkpoint
    from nowcastd.io.transform import DataTransform

    cfg = ModelConfig(
        model_name="predrnn_v2",
        num_hidden=tuple(int(n) for n in args.hidden.split(",")),
        filter_size=args.filter_size,
        patch_size=args.patch_size,
        img_height=args.grid,
        img_width=args.grid,
        input_length=args.input_length,
        total_length=args.input_length + args.leads,
    )
    network = PredRNN(cfg, key=jax.random.key(0))
    save_inference_checkpoint(root / "ckpt", network, DataTransform(kind="dbz"))
    return network


def _scan(i: int, grid: int) -> bytes:
    rng = np.random.default_rng(i)
    buf = io.BytesIO()
    np.save(buf, rng.gamma(0.5, 2.0, (grid, grid)).astype(np.float32))
    return buf.getvalue()


def _serve(args, root: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    incoming, out = root / "incoming", root / "forecasts"
    incoming.mkdir()
    (root / "serve.toml").write_text(
        f'[serve]\nwatch_dir = "{incoming}"\noutput_dir = "{out}"\ncheckpoint = "{root}/ckpt"\n'
        f"metrics_port = {port}\ndebounce_seconds = {args.debounce}\nsettle_seconds = 0.5\n"
        "retention_keep_last = 20\nretention_max_age_hours = 0\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), NOWCASTD_COMPILE_CACHE=str(root / "cache"))
    log_path = root / "serve.log"
    with log_path.open("wb") as log:
        cmd = [sys.executable, "-m", "nowcastd.cli", "serve", "--config", str(root / "serve.toml")]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        while "ready:" not in log_path.read_text():
            if proc.poll() is not None:
                raise SystemExit(f"daemon exited:\n{log_path.read_text()}")
            time.sleep(0.1)
        print(f"daemon ready after {time.monotonic() - started:.1f} s")
        at_ready = _metrics(port)
        rss = [(0, at_ready["process_resident_memory_bytes"])]
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(args.scans):
            if i and i % args.rss_every == 0:
                rss.append((i, _metrics(port)["process_resident_memory_bytes"]))
            name = f"scan_{t0 + timedelta(minutes=5 * i):%Y%m%d%H%M}.npy"
            tmp = incoming / f".{name}.tmp"
            tmp.write_bytes(_scan(i, args.grid))
            os.rename(tmp, incoming / name)
            if i >= args.input_length - 1:
                target = out / f"forecast_{t0 + timedelta(minutes=5 * i):%Y%m%dT%H%M%SZ}.h5"
                deadline = time.monotonic() + 120
                while not target.exists() and time.monotonic() < deadline:
                    time.sleep(0.002)
                # Scans come minutes apart: let the daemon pre-encode this forecast's next
                # window before the next scan (one pre-encoding per forecast so far).
                encode = "nowcastd_stage_duration_seconds_count{encode}"
                while not args.no_idle and _metrics(port)[encode] < i - args.input_length + 2:
                    time.sleep(0.01)
            old = (
                incoming
                / f"scan_{t0 + timedelta(minutes=5 * (i - 2 * args.input_length)):%Y%m%d%H%M}.npy"
            )
            old.unlink(missing_ok=True)  # the feed's own retention
        time.sleep(0.5)
        at_end = _metrics(port)
        rss.append((args.scans, at_end["process_resident_memory_bytes"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    _report(log_path.read_text(), at_ready, at_end, code)
    print("RSS by scan: " + ", ".join(f"{i}: {b / 2**20:.1f}" for i, b in rss) + " MiB")


def _report(log: str, at_ready: dict, at_end: dict, code: int) -> None:
    rows = []
    for m in LINE.finditer(log):
        stages = dict(kv.split("=") for kv in m.group(3).split())
        stages = {k: float(v) for k, v in stages.items()}
        rows.append((float(m.group(2)), stages, m.group(4) == "True"))
    steady = [r for r in rows if r[2]]  # forecasts that used the pre-encoded state
    print(f"forecasts: {len(rows)} ({len(steady)} pre-encoded); daemon exit code {code}")
    lat = [r[0] for r in rows]
    print(
        f"end-to-end latency      p50 {_pct(lat, 50) * 1e3:8.1f} ms  p99 {_pct(lat, 99) * 1e3:8.1f} ms"
    )
    for stage in ("queued", "read", "encode_wait", "transfer", "rollout", "write"):
        values = [r[1].get(stage, 0.0) for r in rows]
        print(
            f"  {stage:<21} p50 {_pct(values, 50) * 1e3:8.1f} ms  p99 {_pct(values, 99) * 1e3:8.1f} ms"
        )
    overhead = [r[0] - r[1].get("rollout", 0.0) for r in rows]
    print(
        f"end-to-end minus rollout p50 {_pct(overhead, 50) * 1e3:7.1f} ms  "
        f"p99 {_pct(overhead, 99) * 1e3:8.1f} ms  (target p99 <= 50 ms)"
    )
    comp = at_end["nowcastd_jit_compilations_total"] - at_ready["nowcastd_jit_compilations_total"]
    print(f"XLA compilations after ready: {comp:.0f} (target 0)")
    rss0, rss1 = at_ready["process_resident_memory_bytes"], at_end["process_resident_memory_bytes"]
    print(
        f"RSS after ready {rss0 / 2**20:.1f} MiB, at end {rss1 / 2**20:.1f} MiB "
        f"({(rss1 - rss0) / 2**20:+.1f} MiB over {len(rows)} forecasts)"
    )


def _critical_path(args, network) -> None:
    import jax

    from nowcastd.io.transform import DataTransform
    from nowcastd.serve.forecaster import Forecaster

    forecaster = Forecaster(network, DataTransform(kind="dbz"), num_leads=args.leads)
    forecaster.compile()
    i, k = args.input_length, args.leads
    rng = np.random.default_rng(0)
    shape = (1, i, args.grid, args.grid, 1)
    contexts = [jax.device_put(rng.uniform(0, 1, shape).astype(np.float32)) for _ in range(2)]
    full, fast = [], []
    for r in range(args.repeats):
        context = contexts[r % 2]
        start = time.perf_counter()
        forecaster.full(context)
        full.append(time.perf_counter() - start)
        forecaster.pre_encode(context, key=range(i))
        start = time.perf_counter()
        _, used = forecaster.forecast(context, key=range(1, i + 1))
        fast.append(time.perf_counter() - start)
        assert used
    f50, c50 = _pct(full, 50), _pct(fast, 50)
    bound = k / (i + k - 1)
    print(
        f"rollout full p50 {f50 * 1e3:.1f} ms; critical path (pre-encoded) p50 {c50 * 1e3:.1f} ms; "
        f"ratio {c50 / f50:.3f} (target <= {bound:.3f} + 10 % = {bound * 1.1:.3f})"
    )


def main() -> None:
    args = _args()
    print(
        f"grid {args.grid}x{args.grid}, hidden {args.hidden}, filter {args.filter_size}, "
        f"patch {args.patch_size}, I={args.input_length}, K={args.leads}, scans {args.scans}, "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        network = _model(args, Path(tmp))
        _serve(args, Path(tmp))
        _critical_path(args, network)


if __name__ == "__main__":
    main()
