"""The radar archive: `dataset archive` scans/s, the training sampler against the training step,
the trainer's memory, and one day's `--append`.

Run from the repository root (CPU):

    PYTHONPATH=. python bench/bench_archive.py                    # 50,000 frames
    PYTHONPATH=. python bench/bench_archive.py --frames 5000 --scans 600 --batches 20

What it does, in a temporary directory (`--keep DIR` keeps it):

1. writes `--scans` native KNMI files (765 x 700) made from the 36 sample scans by shifting,
   flipping and rescaling their rain inside the radar's coverage, every 5 minutes with gaps
   cut in (a missing scan now and then, an hour down once a day), and times
   `nowcastd dataset archive --workers N` on them (`--workers`, default as the command's):
   scans/s wall and per CPU second of all its processes (the reader processes' CPU counted
   when they end with the build), and the RSS of this process and of each reader process as
   it goes (flat memory);
2. writes a `--frames` archive the same way, straight through h5py (the archive layout,
   `nowcastd.data.archive`), and opens it as `nowcastd train --sequences 1` does: the
   bundled model's configuration (64 x 64, 16 frames, batch 4, blocks 1, 2, 4, 30 %
   synthetic); it times the sampler's batches (median, p99) against the bundled model's
   jitted training step (a Lagrangian model's with zero motion), and prints the ratio and
   the process's RSS;
3. appends one day (`--append_scans`, 288) of native scans to that archive and times it.

The figures depend on the machine and its load: it prints the load average before and after.
Nothing asserts on time.
"""

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nowcastd.data.archive import TILE, build_archive, default_workers  # noqa: E402
from nowcastd.io.readers import read_scan  # noqa: E402

SAMPLE = sorted((ROOT / "nowcastd" / "sample" / "knmi").glob("RAD_NL25_*.h5"))
STEP = 300
T0 = int(datetime(2021, 1, 1, tzinfo=UTC).timestamp())
MISSING = 65535


def rss_mb(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # the process has just ended
        return 0.0


def workers_rss_mb() -> list[float]:
    """The RSS of each live child process (the archive's reader processes)."""
    return [rss_mb(p.pid) for p in multiprocessing.active_children()]


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the reader processes
    are joined when a build ends)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def frame_times(n: int, rng: np.random.Generator) -> np.ndarray:
    """n times every 5 minutes with gaps: about 1 % of scans missing and one hour down a day."""
    slots = np.arange(int(n * 1.05) + 400)
    keep = rng.random(len(slots)) > 0.01
    keep[(slots % 288 >= 100) & (slots % 288 < 112)] = False  # an hour down every day
    return T0 + STEP * slots[keep][:n]


class Fields:
    """Raw KNMI image values (uint16, 0.01 mm per 5 min; 65535 outside coverage) made from the
    sample scans by shifting, flipping and rescaling the rain inside the coverage."""

    def __init__(self, rng: np.random.Generator) -> None:
        with h5py.File(SAMPLE[0], "r") as h:
            self.coverage = h["image1/image_data"][:] != MISSING
        self.raw = []
        for path in SAMPLE:
            with h5py.File(path, "r") as h:
                self.raw.append(np.where(self.coverage, h["image1/image_data"][:], 0))
        self.rng = rng

    def raw_frame(self, i: int) -> np.ndarray:
        rng = self.rng
        base = self.raw[i % len(self.raw)]
        moved = np.roll(base, (int(rng.integers(-60, 60)), int(rng.integers(-60, 60))), (0, 1))
        if rng.integers(2):
            moved = moved[:, ::-1]
        scaled = np.clip(moved * rng.uniform(0.5, 2.0), 0, 60000).astype(np.uint16)
        return np.where(self.coverage, scaled, MISSING).astype(np.uint16)

    def mm_h(self, raw: np.ndarray) -> np.ndarray:
        return np.where(raw == MISSING, np.nan, raw * 0.12).astype(np.float32)


def knmi_stamp(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%d-%b-%Y;%H:%M:%S.000").upper()


def write_scans(directory: Path, times: np.ndarray, fields: Fields, offset: int = 0) -> None:
    """Native KNMI files: a sample file with new image data and times."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, unix in enumerate(times):
        name = datetime.fromtimestamp(int(unix), UTC).strftime("RAD_NL25_RAP_5min_%Y%m%d%H%M.h5")
        path = directory / name
        shutil.copyfile(SAMPLE[0], path)
        with h5py.File(path, "r+") as h:
            h["image1/image_data"][...] = fields.raw_frame(offset + i)
            h["overview"].attrs["product_datetime_start"] = np.bytes_(knmi_stamp(int(unix) - STEP))
            h["overview"].attrs["product_datetime_end"] = np.bytes_(knmi_stamp(int(unix)))


def bench_build(
    tmp: Path, n_scans: int, fields: Fields, rng: np.random.Generator, workers: int | None
) -> Path:
    scans = tmp / "scans"
    t0 = time.perf_counter()
    write_scans(scans, frame_times(n_scans, rng), fields)
    print(f"wrote {n_scans} native scans in {time.perf_counter() - t0:.1f} s")
    rss: list[tuple[int, float, list[float]]] = []

    def progress(done: int, total: int) -> None:
        if done % max(1, total // 6) == 0 or done == total:
            rss.append((done, rss_mb(), workers_rss_mb()))

    out = tmp / "scans.h5"
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    s = build_archive(scans, out, progress=progress, workers=workers)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    print(
        f"dataset archive (--workers {workers or default_workers(n_scans)}): {s.added} scans in "
        f"{seconds:.1f} s = {s.added / seconds:.1f} scans/s wall, {s.added / cpu:.1f} scans per "
        f"CPU second of all its processes ({out.stat().st_size / s.added / 1e3:.0f} kB per "
        f"frame, {s.gaps} gaps kept)"
    )
    print(
        "  RSS while archiving (scans done: MB of this process + MB of each reader process): "
        + ", ".join(
            f"{d}: {m:.0f}" + "".join(f" + {w:.0f}" for w in workers) for d, m, workers in rss
        )
    )
    return out


def write_archive(path: Path, times: np.ndarray, fields: Fields) -> None:
    """The archive layout of `nowcastd.data.archive`, written straight from the fields."""
    grid = read_scan(SAMPLE[0]).grid
    with h5py.File(path, "w") as h:
        ds = h.create_dataset(
            "precip",
            shape=(len(times), *grid.shape),
            maxshape=(None, *grid.shape),
            dtype=np.float32,
            chunks=(1, TILE, TILE),
            compression="lzf",
            shuffle=True,
            fillvalue=np.nan,
        )
        ds.attrs["units"] = "mm/h"
        h.create_dataset("time_unix", data=times, maxshape=(None,), chunks=(4096,))
        h.attrs.update(
            {"format": "nowcastd-archive", "timestep_seconds": STEP, "source_format": "knmi"}
        )
        h.attrs["projection"] = grid.projection or ""
        for i in range(len(times)):
            ds[i] = fields.mm_h(fields.raw_frame(i))


def bench_sampler_and_step(archive: Path, batches: int, steps: int) -> None:
    import equinox as eqx
    import jax

    from model.checkpoint import config_from_json
    from model.network import PredRNN
    from model.sampling import SamplingConfig
    from model.train import adam, init_train_state, make_train_step
    from nowcastd.data.sequences import SamplerConfig, SequenceSampler, load_movie
    from nowcastd.io.transform import DBZ
    from nowcastd.train.loop import objective

    meta = json.loads((ROOT / "nowcastd" / "bundled" / "model" / "meta.json").read_text())
    model = config_from_json(meta["model_config"])
    cfg = SamplerConfig(
        total_length=model.total_length,
        height=model.img_height,
        width=model.img_width,
        input_length=model.input_length,
        blocks=(1, 2, 4),
        synthetic_fraction=0.3,
    )
    before = rss_mb()
    sampler = SequenceSampler([load_movie(archive)], cfg, DBZ, 4, np.random.default_rng(0))
    draw = []
    for _ in range(batches):
        t0 = time.perf_counter()
        clips, valid = next(sampler)
        draw.append(time.perf_counter() - t0)
    draw_ms = np.asarray(draw) * 1e3
    after_sampler = rss_mb()

    optimizer = adam(1e-3)
    network = eqx.filter_jit(PredRNN)(model, key=jax.random.key(0))
    state = init_train_state(network, optimizer, jax.random.key(1))
    step = make_train_step(
        optimizer,
        SamplingConfig(scheduled_sampling=False),
        reverse_input=False,
        loss=objective("weighted", DBZ),
    )
    # a Lagrangian model's step takes each clip's motion: zero motion costs what any does
    motion = (
        np.zeros((clips.shape[0], *clips.shape[2:4], 2), np.float32) if model.lagrangian else None
    )
    state, m = step(state, clips, valid[..., :1], motion)
    jax.block_until_ready(m.loss)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, m = step(state, clips, valid[..., :1], motion)
        jax.block_until_ready(m.loss)
        times.append(time.perf_counter() - t0)
    step_ms = np.asarray(times) * 1e3
    p = lambda a, q: float(np.percentile(a, q))  # noqa: E731
    print(
        f"sampler (bundled config: batch 4, {model.img_height}x{model.img_width}, T "
        f"{model.total_length}, blocks 1,2,4, 30 % synthetic): median {p(draw_ms, 50):.1f} ms, "
        f"p99 {p(draw_ms, 99):.1f} ms per batch ({batches} batches, one thread, no prefetch)"
    )
    print(
        f"training step (bundled model, one process, XLA's CPU threads): median "
        f"{p(step_ms, 50):.0f} ms, p99 {p(step_ms, 99):.0f} ms ({steps} steps)"
    )
    print(
        f"sampler / step: {p(step_ms, 50) / p(draw_ms, 50):.1f}x faster than the step "
        "consumes (median against median)"
    )
    print(
        f"RSS: {before:.0f} MB before the sampler, {after_sampler:.0f} MB after "
        f"{batches} batches, {rss_mb():.0f} MB with the compiled step; peak {peak_rss_mb():.0f} MB"
    )


def bench_append(
    tmp: Path, archive: Path, times: np.ndarray, n: int, fields: Fields, workers: int | None
) -> None:
    day = tmp / "day"
    new = times[-1] + STEP * (1 + np.arange(n))
    write_scans(day, new, fields, offset=len(times))
    t0 = time.perf_counter()
    s = build_archive(day, archive, append=True, workers=workers)
    seconds = time.perf_counter() - t0
    print(
        f"--append of {s.added} scans to the {s.frames - s.added}-frame archive "
        f"({archive.stat().st_size / 1e9:.2f} GB): {seconds:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--scans", type=int, default=600, help="native scans for scans/s")
    parser.add_argument(
        "--workers", type=int, default=None, help="dataset archive --workers (default: cores)"
    )
    parser.add_argument("--append_scans", type=int, default=288)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    print(f"load average before: {load()}; {os.cpu_count()} CPUs")
    rng = np.random.default_rng(0)
    fields = Fields(rng)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        bench_build(tmp, args.scans, fields, rng, args.workers)
        archive = tmp / "archive.h5"
        times = frame_times(args.frames, rng)
        t0 = time.perf_counter()
        write_archive(archive, times, fields)
        print(
            f"synthetic archive: {args.frames} frames of 765x700 "
            f"({archive.stat().st_size / 1e9:.2f} GB) written in {time.perf_counter() - t0:.0f} s"
        )
        bench_sampler_and_step(archive, args.batches, args.steps)
        bench_append(tmp, archive, times, args.append_scans, fields, args.workers)
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
