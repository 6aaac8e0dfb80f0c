"""Generated hostile scans against a live `nowcastd serve`: outcomes by reason, survival, memory.

    python bench/fuzz_readers.py --count 2000 --seed 1

Starts a real daemon with the tiny test model on a 64 x 64 grid (`tests/nowcastd/serve/daemon`,
as bench/soak.py), warms it up with good scans, then delivers `--count` files one at a time:
every tenth a good scan, the others hostile ODIM_H5, KNMI and .npy scans from
`tests/reliability/mutations.py` (seeded by `--seed`; gzip bombs of `--bomb-mib` MiB). Each
file gets its own 5-minute slot and is waited for until the daemon's events file names it.
Before it is delivered, each hostile file is also read here, in this process, to measure the
reader's CPU seconds and peak resident memory for it.

Prints: the outcomes of the hostile files by event and reason; daemon exits (with the file
that caused each, after which the file is removed and the daemon restarted); reader-process
deaths (`reader_crashed`, `timeout`) and reader processes started; whether the good scan after
each hostile run was forecast; daemon RSS after warm-up and at the end; the most expensive
file in reader CPU and memory; then, here, the reader's CPU and memory for the costliest valid
scan of a 765 x 700 grid and for a 1 MB KNMI file whose gzip chunk inflates to `--bomb-mib`
MiB. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from nowcastd.errors import ScanError  # noqa: E402
from nowcastd.io.model_checkpoint import save_inference_checkpoint  # noqa: E402
from nowcastd.io.readers import ReadPolicy, read_scan  # noqa: E402
from nowcastd.io.transform import DataTransform  # noqa: E402
from tests.nowcastd.io.readers.odim_helper import write_odim  # noqa: E402
from tests.nowcastd.serve.daemon import NATIVE, T0, Daemon, _scan_name  # noqa: E402
from tests.nowcastd.serve.tiny import tiny_network  # noqa: E402
from tests.reliability.mutations import (  # noqa: E402
    KINDS,
    KNMI_SAMPLE,
    RandomDraw,
    bomb,
    hostile,
    scan_name,
)

EXTRA = "max_gap_seconds = 8640000\n"  # refused files leave gaps; the buffer keeps its frames
WAIT_SECONDS = 60.0


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="files delivered, good included")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bomb-mib", type=int, default=1024, help="what a gzip bomb inflates to")
    return parser.parse_args()


def _status(pid: int, key: str) -> float:
    """A /proc/PID/status figure in MB (VmRSS, VmHWM)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1)) / 1024


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def measure(path: Path, shape: tuple[int, int] = (NATIVE, NATIVE)) -> tuple[float, float, str]:
    """Reader CPU seconds, peak memory above the resident set (MB) and outcome of reading
    `path` here, as the daemon's reader does (peak reset through /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status(os.getpid(), "VmRSS")
    start = time.process_time()
    outcome = "scan"
    try:
        read_scan(path, policy=ReadPolicy(expected_shape=shape))
    except ScanError as e:
        outcome = e.reason
    return time.process_time() - start, _status(os.getpid(), "VmHWM") - before, outcome


def costliest(root: Path, bomb_mib: int) -> None:
    """What the reader spends on the costliest valid scan of a 765 x 700 grid (float64
    reflectivity) and on a KNMI sample whose one gzip chunk inflates to `bomb_mib` MiB."""
    shape = (765, 700)
    valid, bombed = root / "dbzh_f8.h5", root / "bomb.h5"
    raw = np.random.default_rng(0).uniform(0, 60, shape)
    write_odim(valid, raw=raw, quantity="DBZH", nominal_time=T0, end_time=T0)
    bombed.write_bytes(KNMI_SAMPLE.read_bytes())
    with h5py.File(bombed, "a") as h:
        del h["image1/image_data"]
        ds = h["image1"].create_dataset(
            "image_data", shape=shape, dtype=np.uint16, chunks=shape, compression="gzip"
        )
        ds.id.write_direct_chunk((0, 0), bomb(bomb_mib))
    measure(valid, shape)  # imports and caches warm
    for label, path in (("valid float64 DBZH ODIM", valid), (f"{bomb_mib} MiB gzip bomb", bombed)):
        cpu, mem, outcome = measure(path, shape)
        size = path.stat().st_size / 1e6
        print(f"765 x 700 {label} ({size:.1f} MB file): {outcome}, reader CPU {cpu:.3f} s, "
              f"peak memory {mem:.0f} MB")  # fmt: skip


class Events:
    """The daemon's events file, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.by_scan = path, 0, {}

    def wait(self, d: Daemon, name: str) -> dict | None:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and d.proc.poll() is None:
            if self.path.exists():
                with self.path.open() as f:
                    f.seek(self.offset)
                    for line in f.readlines():
                        if line.endswith("\n"):
                            event = json.loads(line)
                            self.by_scan[event["scan"]] = event
                            self.offset += len(line.encode())
            if name in self.by_scan:
                return self.by_scan[name]
            time.sleep(0.01)
        return None


def _label(event: dict | None) -> str:
    if event is None:
        return "no event (daemon exited or 60 s passed)"
    if event["event"] in ("rejected", "failed"):
        return (
            f"{event['event']}: {event.get('stage', '') + ' ' if 'stage' in event else ''}"
            + (event["reason"])
        )
    return event["event"]


def _good(d: Daemon, events: Events, slot: int) -> bool:
    d.write_then_rename(slot)
    event = events.wait(d, _scan_name(slot))
    return event is not None and event["event"] == "forecast"


def _warm_up(d: Daemon, events: Events) -> int:
    for slot in range(12):
        if _good(d, events, slot):
            return slot + 1
    raise SystemExit(f"no forecast after 12 good scans; log:\n{d.log_text()[-3000:]}")


def run(args: argparse.Namespace, root: Path) -> None:
    save_inference_checkpoint(root / "ckpt", tiny_network(size=32), DataTransform(kind="dbz"))
    d = Daemon(root, extra=EXTRA)
    d.start()
    events = Events(root / "events.jsonl")
    slot = _warm_up(d, events)
    rss_start, readers = _status(d.proc.pid, "VmRSS"), set(_children(d.proc.pid))
    draw = RandomDraw(random.Random(args.seed))
    outcomes: collections.Counter[str] = collections.Counter()
    exits, good, good_missed = [], 0, []
    worst_cpu, worst_mem = (0.0, ""), (0.0, "")
    started = time.monotonic()
    for j in range(args.count):
        slot += 1
        if j % 10 == 9:
            good += 1
            if not _good(d, events, slot):
                good_missed.append(_scan_name(slot))
            continue
        kind = KINDS[j % len(KINDS)]
        when = T0 + timedelta(minutes=5 * slot)
        name = scan_name(kind, when, str(j))
        stage = d.staging / name
        labels = hostile(
            draw, stage, kind, (NATIVE, NATIVE), when, bomb_mib=args.bomb_mib, collect=True
        )
        cpu, mem, _ = measure(stage)
        worst_cpu = max(worst_cpu, (cpu, f"{name} {labels}"))
        worst_mem = max(worst_mem, (mem, f"{name} {labels}"))
        os.rename(stage, d.incoming / name)
        outcomes[_label(events.wait(d, name))] += 1
        readers |= _children(d.proc.pid)
        if d.proc.poll() is not None:
            exits.append(f"{name} (exit status {d.proc.returncode}) {labels}")
            (d.incoming / name).unlink()
            d.start()
    seconds = time.monotonic() - started
    _report(args, d, outcomes, exits, good, good_missed, rss_start, readers, seconds)
    print(f"reader CPU per hostile file, worst: {worst_cpu[0]:.3f} s ({worst_cpu[1][:200]})")
    print(f"reader peak memory above resident, worst: {worst_mem[0]:.0f} MB ({worst_mem[1][:200]})")
    d.proc.terminate()
    d.proc.wait(timeout=30)
    costliest(root, args.bomb_mib)


def _report(args, d, outcomes, exits, good, good_missed, rss_start, readers, seconds) -> None:
    hostile_count = sum(outcomes.values())
    print(f"fuzz_readers: seed {args.seed}, {args.count} files ({hostile_count} hostile, {good} "
          f"good), bombs of {args.bomb_mib} MiB, {seconds:.0f} s")  # fmt: skip
    print("hostile files by outcome:")
    for label, n in outcomes.most_common():
        print(f"  {n:6d}  {label}")
    deaths = sum(n for label, n in outcomes.items() if re.search("reader_crashed|timeout", label))
    print(f"daemon exits: {len(exits)}")
    for line in exits:
        print(f"  {line[:300]}")
    print(f"reader-process deaths (reader_crashed, timeout): {deaths}; "
          f"reader processes seen: {len(readers)}")  # fmt: skip
    print(f"good scans forecast: {good - len(good_missed)} of {good}"
          + (f"; missed: {', '.join(good_missed[:5])}" if good_missed else ""))  # fmt: skip
    rss_end = _status(d.proc.pid, "VmRSS") if d.proc.poll() is None else float("nan")
    print(f"daemon RSS: {rss_start:.0f} MB after warm-up, {rss_end:.0f} MB at the end")


def main() -> None:
    args = _args()
    with tempfile.TemporaryDirectory(prefix="nowcastd-fuzz-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
