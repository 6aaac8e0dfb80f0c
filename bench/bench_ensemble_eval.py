"""The verdict of the model's ensemble against pysteps' STEPS on the validation sets at 4 km.

Run from the repository root:

    PYTHONPATH=. python bench/bench_ensemble_eval.py                       # 20 members, all sets
    PYTHONPATH=. python bench/bench_ensemble_eval.py --members 8 --sets mch_20150515
    PYTHONPATH=. python bench/bench_ensemble_eval.py --noise-gain 0.8 --out-dir eval/

The validation sets are `bench/bench_evaluate.py`'s (`nowcastd.data.validation`, in
``../shared/data/radar``), each at its 4 km crop (``--resolution 2km`` for the other). On every
start time with a full context, the model's ensemble (`nowcastd.ensemble.forecast_ensemble`,
the bundled model by default) and STEPS (`pysteps.nowcasts.steps`) forecast ``--members``
members each from the same window and motion, seeded by serve's rule, and are scored on the
same pixels by the one ensemble scorer (`nowcastd.verification.ensemble_skill`): per lead the
CRPS, the ROC area and reliability at 1 and 5 mm/h, the rank histogram's ends and the
spread-skill ratio. For each set, then pooled over the sets with a 5-minute step, it prints the
table and the verdict (`nowcastd.verification.ensemble_verdict`): CRPS lower than STEPS' at
every lead from 5 to 60 min, the ROC area at 1 and 5 mm/h at least STEPS', and the observed
frequency within 0.1 of the forecast probability in every reliability bin holding at least 1 %
of the pixels; each score and lead that fails is named. Then a summary of every verdict.
``--out-dir`` writes each JSON and reliability plot. Nothing here asserts: the script exits 0
once it has scored.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_evaluate import RADAR_DIR, RESOLUTIONS, SET_NAMES, _jobs  # noqa: E402


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: the bundled model")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument(
        "--sets", default="all", help=f"comma-separated validation sets, or all: {SET_NAMES}"
    )
    parser.add_argument("--radar-dir", type=Path, default=RADAR_DIR)
    parser.add_argument(
        "--data", type=Path, help="one HDF5 movie instead of the sets (MeteoSwiss crops)"
    )
    parser.add_argument("--lead-frames", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resolution", choices=RESOLUTIONS, default="4km")
    parser.add_argument("--seed", type=int, default=0, help="the base seed of both ensembles")
    parser.add_argument("--design", choices=("perturb", "network"), default="perturb")
    parser.add_argument("--noise-gain", type=float, default=1.0)
    parser.add_argument("--out-dir", type=Path, help="write <set>_<resolution>.json and .png")
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace):
    from nowcastd.ensemble import EnsembleSettings

    return EnsembleSettings(
        members=args.members, seed=args.seed, design=args.design, noise_gain=args.noise_gain
    )


def _score(args, loaded, settings, job, res):
    """One set's ensemble comparison at `res`, printed (and written with --out-dir)."""
    from nowcastd.verification.comparison import write_json
    from nowcastd.verification.ensemble_comparison import (
        compare_ensembles,
        format_ensemble_comparison,
    )
    from nowcastd.verification.ensemble_figures import save_reliability_plot
    from nowcastd.verification.sequence import read_movie_sequence

    name, path, frames, leads, crops = job
    crop, block = crops[res]
    t0 = time.perf_counter()
    seq = read_movie_sequence(path, crop=crop, block=block, frames=frames)
    report = compare_ensembles(
        loaded,
        seq,
        settings=settings,
        lead_frames=leads,
        batch_size=args.batch_size,
        name=f"{name} {res}",
    )
    seconds = time.perf_counter() - t0
    print(f"\n== {name} at {res}: {path.name}, crop {crop}, block {block} ({seconds:.1f} s)")
    print(format_ensemble_comparison(report))
    timing = ", ".join(f"{m} {s:.1f} s" for m, s in report.seconds.items())
    print(f"time per method (model includes compilation): {timing}")
    if args.out_dir is not None:
        write_json(args.out_dir / f"ensemble_{name}_{res}.json", report.to_json())
        save_reliability_plot(args.out_dir / f"ensemble_{name}_{res}.png", report)
    return report


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from bench.bench_evaluate import _load
    from nowcastd.verification.ensemble_comparison import (
        format_ensemble_comparison,
        pool_ensembles,
    )

    # the checkpoint as bench_evaluate loads it, with its own rollout strategy and matching
    loaded = _load(
        argparse.Namespace(
            checkpoint=args.checkpoint, strategy="default", match_intensity="checkpoint"
        )
    )
    settings = _settings(args)
    print(f"ensemble: {settings}")
    reports = [_score(args, loaded, settings, job, args.resolution) for job in _jobs(args)]
    summary = [f"{r.name}: {v.describe()}" for r in reports if (v := r.verdict()) is not None]
    five_minutes = [r for r in reports if r.timestep_seconds == 300]
    if len(five_minutes) > 1:
        pooled = pool_ensembles(five_minutes, name=f"pooled {args.resolution}")
        print(f"\n== pooled at {args.resolution}")
        print(format_ensemble_comparison(pooled))
        if (verdict := pooled.verdict()) is not None:
            summary.append(f"{pooled.name}: {verdict.describe()}")
    print("\n== verdicts")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
