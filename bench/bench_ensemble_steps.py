"""Speed, side by side in one run: the model's ensemble forecast against pysteps' STEPS.

Run from the repository root:

    PYTHONPATH=. python bench/bench_ensemble_steps.py                  # 20 members, 12 leads
    PYTHONPATH=. python bench/bench_ensemble_steps.py --sizes 128 --repeats 30 --design network

For each grid size (128 x 128 and 64 x 64 by default: the MeteoSwiss 2015-05-15 validation
event at 4 km, its middle for 64), on windows from successive start times of real rain, both
forecast ``--members`` members over ``--leads`` leads from the same inputs and the same
Lucas-Kanade motion (estimated once per window, outside the timing):

- ours: `nowcastd.ensemble.forecast_ensemble` on the bundled model's `EnsembleProgram`
  (compiled before timing), perturbations included: the host's pysteps part (noise spectrum,
  BPS motion perturbations) and the compiled program;
- STEPS: `nowcastd.verification.baselines.Steps` (`pysteps.nowcasts.steps` with the same
  members, its default noise, motion perturbations and masking, dB in and out).

Their calls alternate (one of ours, one of STEPS', on the same window), so that a load that
comes and goes falls on both. It prints each one's median and p99 wall time, the ratio STEPS /
ours, and our per-stage split (host perturbations, compiled program: each run once more on its
own after the timed call). One untimed call of each comes first. The figures are for the
machine it runs on: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_evaluate import RADAR_DIR  # noqa: E402

SET = "mch_20150515"


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: the bundled model")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--leads", type=int, default=12)
    parser.add_argument("--sizes", default="128,64", help="comma-separated square grid sizes")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per method and size")
    parser.add_argument("--design", choices=("perturb", "network"), default="perturb")
    parser.add_argument("--radar-dir", type=Path, default=RADAR_DIR)
    return parser.parse_args(argv)


def _windows(args: argparse.Namespace, size: int, n_in: int) -> np.ndarray:
    """(W, n_in, size, size) mm/h input windows of the validation event at 4 km."""
    import h5py

    from nowcastd.data.validation import VALIDATION_SETS
    from nowcastd.verification.sequence import read_movie_sequence

    v = next(s for s in VALIDATION_SETS if s.name == SET)
    path = args.radar_dir / v.file
    with h5py.File(path, "r") as h:
        frames = v.frames(np.asarray(h["time_unix"][:], np.int64))
    (row0, col0, height, width), block = v.crops["4km"]
    off = (height // block - size) // 2 * block
    crop = (row0 + off, col0 + off, size * block, size * block)
    seq = read_movie_sequence(path, crop=crop, block=block, frames=frames)
    starts = range(0, seq.precip.shape[0] - n_in + 1, 2)
    return np.stack([seq.precip[s : s + n_in] for s in starts])


def _stats(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 99))


def _program(args, loaded, size: int):
    from nowcastd.ensemble import EnsembleProgram, EnsembleSettings

    settings = EnsembleSettings(members=args.members, design=args.design)
    program = EnsembleProgram(
        loaded.network, loaded.transform, settings, num_leads=args.leads, grid=(size, size),
        batch=1, motion_method=loaded.motion_method, strategy=loaded.strategy,
    )  # fmt: skip
    print(f"  ours: compiled in {program.compile():.1f} s ({args.design} design)")
    return program


def _call_ours(loaded, program, x, v, seed: int) -> tuple[float, float, float]:
    """Seconds of one whole forecast, then of its two stages run again on their own."""
    from nowcastd.ensemble import forecast_ensemble
    from nowcastd.ensemble.perturbations import estimate_perturbations
    from nowcastd.nowcast import Window

    t0 = time.perf_counter()
    window = Window.from_rates(x, loaded.transform)
    forecast_ensemble(window, program, seed=seed, flow=v)
    t1 = time.perf_counter()
    context = np.asarray(window.context, np.float32)
    p = estimate_perturbations(
        context[:, -1, ..., 0], program.num_leads, program.settings, seed=seed
    )
    t2 = time.perf_counter()
    program(window.context, v, p)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def _time_both(args, loaded, windows, motions, size: int) -> dict[str, list[float]]:
    """Seconds per call, ours and STEPS' interleaved call by call (a load that comes and goes
    falls on both); the first call of each is untimed."""
    from nowcastd.verification.baselines import Steps

    program = _program(args, loaded, size)
    steps = Steps(pixel_km=4.0, timestep_minutes=5.0)
    out: dict[str, list[float]] = {"ours": [], "perturbations": [], "program": [], "steps": []}
    for i in range(args.repeats + 1):
        x, v = windows[i % len(windows)], motions[i % len(windows)]
        total, perturbations, compiled = _call_ours(loaded, program, x[None], v[None], i)
        t0 = time.perf_counter()
        steps(x, args.leads, args.members, i, v)
        if i:
            out["ours"].append(total)
            out["perturbations"].append(perturbations)
            out["program"].append(compiled)
            out["steps"].append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from nowcastd.data.motion import MotionEstimator
    from nowcastd.io.model_checkpoint import load_model

    loaded = load_model(args.checkpoint)
    n_in = loaded.cfg.input_length
    print(
        f"{args.members} members x {args.leads} leads, {args.repeats} timed calls each; model "
        f"{loaded.path.name} ({n_in} inputs); {os.cpu_count()} CPUs, load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    for size in (int(s) for s in args.sizes.split(",")):
        windows = _windows(args, size, n_in)
        motions = MotionEstimator(loaded.motion_method).batch(windows)
        print(f"\n{size} x {size} ({len(windows)} windows of {SET} at 4 km)")
        ours = _time_both(args, loaded, windows, motions, size)
        (om, op), (sm, sp) = _stats(ours["ours"]), _stats(ours["steps"])
        print(f"  ours : median {om:8.1f} ms   p99 {op:8.1f} ms")
        print(f"  STEPS: median {sm:8.1f} ms   p99 {sp:8.1f} ms")
        print(f"  STEPS / ours: {sm / om:.2f}x at the median, {sp / op:.2f}x at p99")
        split = ", ".join(f"{k} {_stats(ours[k])[0]:.1f} ms" for k in ("perturbations", "program"))
        print(f"  ours by stage (median): {split}")
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
