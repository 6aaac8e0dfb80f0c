"""Score a checkpoint on the validation event at 4 km and 2 km against persistence and pysteps.

Run from the repository root:

    PYTHONPATH=. python bench/bench_evaluate.py --checkpoint CHECKPOINT
    PYTHONPATH=. python bench/bench_evaluate.py --checkpoint CHECKPOINT --out-dir eval/

The data default to the validation event of the shared radar events,
``../shared/data/radar/events/mch_20150515.h5`` beside the repository (MeteoSwiss, 40 frames of
5 min, 640 × 710 pixels of 1 km; never used for training). Two resolutions, each a 128 × 128
model grid so that a run takes about a minute on a CPU:

- 4 km: rows 64–575, columns 96–607 of the native grid (512 × 512 km, about 5 % without data),
  block-averaged by 4;
- 2 km: rows 192–447, columns 320–575 (256 × 256 km in the middle of the 4 km window, where
  the rain is, no missing data), block-averaged by 2.

Every start time with a full context is scored for 12 leads (60 min) by default. For each
resolution it prints the per-lead table of `nowcastd evaluate` (MAE in mm/h / CSI at 1 mm/h),
then whether the model beats persistence and pysteps' Lucas–Kanade extrapolation on MAE and on
CSI at 1 mm/h at every lead from 5 to 60 min (the target), and the stretch targets: S-PROG on
MAE, and LK on CSI at 5 mm/h. With ``--out-dir`` it also writes each resolution's JSON and plot. Nothing here
asserts: the script always exits 0 once it has scored.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nowcastd.verification.scores import CSI_1, MAE, category_score  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "radar" / "events" / "mch_20150515.h5"
#: name -> (crop (row0, col0, height, width) in native 1 km pixels, block factor)
RESOLUTIONS = {
    "4km": ((64, 96, 512, 512), 4),
    "2km": ((192, 320, 256, 256), 2),
}
WINDOW_MINUTES = (5, 60)


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="HDF5 movie (default: the validation event)"
    )
    parser.add_argument("--lead-frames", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resolution", choices=(*RESOLUTIONS, "all"), default="all")
    parser.add_argument("--out-dir", type=Path, help="write <resolution>.json and .png here")
    parser.add_argument(
        "--match-intensity",
        choices=("checkpoint", "0", "1"),
        default="checkpoint",
        help="probability matching of the forecasts (an inference option): as the checkpoint "
        "says, off or on",
    )
    parser.add_argument(
        "--strategy",
        default="default",
        help="how the model's rollout runs (model.strategy): default, or a name such as "
        "bf16=on (bfloat16 convolutions, which change values: judge them here)",
    )
    return parser.parse_args(argv)


CSI_5 = category_score("csi", 5.0)
SCORES = {MAE: "MAE", CSI_1: "CSI@1", CSI_5: "CSI@5"}


def beats(report: dict, rival: str, scores: tuple[str, ...]) -> dict[str, list[float]]:
    """Lead minutes in the target window where the model does NOT beat `rival`, per score."""
    model, other = report["methods"]["model"], report["methods"][rival]
    lo, hi = WINDOW_MINUTES
    losses: dict[str, list[float]] = {score: [] for score in scores}
    for k, minutes in enumerate(report["lead_minutes"]):
        if not lo <= minutes <= hi:
            continue
        for score in scores:
            ours, theirs = model[score][k], other[score][k]
            better = ours < theirs if score == MAE else ours > theirs
            if not better:  # NaN counts as a loss
                losses[score].append(minutes)
    return losses


def verdict(report: dict, rival: str, scores: tuple[str, ...] = (MAE, CSI_1)) -> str:
    if rival not in report["methods"]:
        return f"vs {rival}: not scored ({report['not_scored'].get(rival, '')})"
    covered = [m for m in report["lead_minutes"] if WINDOW_MINUTES[0] <= m <= WINDOW_MINUTES[1]]
    if not covered or covered[-1] < WINDOW_MINUTES[1]:
        return f"vs {rival}: leads reach {report['lead_minutes'][-1]:g} min only, not 60"
    parts = []
    lost_by_score = beats(report, rival, scores)
    for score in scores:
        label, lost = SCORES[score], lost_by_score[score]
        parts.append(
            f"{label} yes"
            if not lost
            else f"{label} NO (at {', '.join(f'{m:g}' for m in lost)} min)"
        )
    return f"beats {rival} at every lead 5-60 min: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from model.strategy import parse_strategy
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.verification.comparison import compare, format_comparison, write_json
    from nowcastd.verification.figures import save_lead_time_plot
    from nowcastd.verification.sequence import read_movie_sequence

    try:
        strategy = parse_strategy(args.strategy)
    except ValueError as e:
        raise SystemExit(f"bench_evaluate: --strategy: {e}") from None
    loaded = load_model(args.checkpoint)
    loaded = dataclasses.replace(loaded, network=loaded.network.with_strategy(strategy))
    if args.match_intensity != "checkpoint":
        cfg = dataclasses.replace(loaded.cfg, match_intensity=args.match_intensity == "1")
        loaded = dataclasses.replace(loaded, network=loaded.network.with_inference_options(cfg))
    cfg = loaded.cfg
    print(
        f"checkpoint {loaded.path} ({cfg.model_name}, {cfg.input_length} inputs, "
        f"sha256 {loaded.digest[:12]}, lagrangian {int(cfg.lagrangian)}, match_intensity "
        f"{int(cfg.match_intensity)}); strategy {strategy.name}; data {args.data}"
    )
    names = list(RESOLUTIONS) if args.resolution == "all" else [args.resolution]
    for name in names:
        crop, block = RESOLUTIONS[name]
        t0 = time.perf_counter()
        seq = read_movie_sequence(args.data, crop=crop, block=block)
        report = compare(
            loaded, seq, lead_frames=args.lead_frames, batch_size=args.batch_size, baselines=True
        )
        seconds = time.perf_counter() - t0
        print(f"\n== {name}: crop {crop}, block {block} ({seconds:.1f} s)")
        print(format_comparison(report))
        print(verdict(report, "persistence"))
        print(verdict(report, "pysteps_lk"))
        print(verdict(report, "pysteps_sprog", (MAE,)) + " (stretch)")
        print(verdict(report, "pysteps_lk", (CSI_5,)) + " (stretch)")
        timing = ", ".join(f"{m} {s:.1f} s" for m, s in report["seconds"].items())
        print(f"time per method (model includes compilation): {timing}")
        if args.out_dir is not None:
            write_json(args.out_dir / f"{name}.json", report)
            save_lead_time_plot(args.out_dir / f"{name}.png", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
