"""The verdict of a checkpoint on the validation sets, at 4 km and 2 km, against persistence,
pysteps' extrapolation (LK) and S-PROG.

Run from the repository root:

    PYTHONPATH=. python bench/bench_evaluate.py                     # the bundled model
    PYTHONPATH=. python bench/bench_evaluate.py --sets all --resolution 4km
    PYTHONPATH=. python bench/bench_evaluate.py --checkpoint CKPT --sets all --out-dir eval/

The validation sets (`nowcastd.data.validation`) live in the radar data directory
``../shared/data/radar`` beside the repository (``--radar-dir``): the MeteoSwiss 2015-05-15
event kept whole (the default set), and the held-out final part of each training event (summer
convection, winter stratiform, the US mesoscale system, the KNMI band); ``--sets all`` runs
them all. Each set has its own 4 km and 2 km crops (`ValidationSet.crops`); ``--data MOVIE``
scores one movie with the MeteoSwiss crops instead.

Every start time with a full context is scored for up to ``--lead-frames`` leads (12: 60 min;
fewer where a set is shorter). For each set and resolution it prints `nowcastd evaluate`'s
table (per lead and method: MAE, CSI, POD, FAR, FSS over 20 km and the frequency bias at 1 and
5 mm/h) and the verdicts against persistence and LK: never worse on any score (CSI and FSS at
least the baseline's − 0.01; the frequency bias inside 0.8-1.25 at 1 mm/h and 0.6-1.5 at
5 mm/h, or at least as close to 1 as the baseline's) and better on MAE, at every lead up to
60 min, naming each score and lead that fails (`nowcastd.verification.verdict`); then the
stretch: S-PROG on MAE, LK on CSI at 5 mm/h. Then one table per resolution pooled over the sets
with a 5-minute step, and a summary of every verdict. With ``--out-dir`` it writes each JSON
(and plot); ``--against DIR`` (an earlier run's ``--out-dir``, say the bundled model's) judges
the model against that run's model by the same verdict, set by set. Nothing here asserts: the
script exits 0 once it has scored.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nowcastd.data.validation import MCH_CROPS, VALIDATION_SETS  # noqa: E402

RADAR_DIR = REPO.parent / "shared" / "data" / "radar"
RESOLUTIONS = tuple(MCH_CROPS)
SET_NAMES = tuple(v.name for v in VALIDATION_SETS)


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: the bundled model")
    parser.add_argument(
        "--sets",
        default=SET_NAMES[0],
        help=f"comma-separated validation sets, or all: {', '.join(SET_NAMES)}",
    )
    parser.add_argument("--radar-dir", type=Path, default=RADAR_DIR)
    parser.add_argument(
        "--data", type=Path, help="one HDF5 movie instead of the sets (MeteoSwiss crops)"
    )
    parser.add_argument("--lead-frames", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resolution", choices=(*RESOLUTIONS, "all"), default="all")
    parser.add_argument("--out-dir", type=Path, help="write <set>_<resolution>.json and .png here")
    parser.add_argument(
        "--against",
        type=Path,
        help="an earlier run's --out-dir: also judge the model against that run's model",
    )
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


def _stretch(report) -> list[str]:
    """The stretch targets: MAE below S-PROG's, CSI at 5 mm/h above LK's, at every lead."""
    methods, lines = report.methods, []
    model = methods["model"]
    targets = []
    if "pysteps_sprog" in methods:
        targets.append(("MAE below S-PROG's", model.mae, methods["pysteps_sprog"].mae, -1))
    if "pysteps_lk" in methods:
        lk = methods["pysteps_lk"].at(5.0).csi
        targets.append(("CSI>=5 above LK's", model.at(5.0).csi, lk, 1))
    for label, ours, theirs, sign in targets:
        lost = [
            f"+{m:g}"
            for k, m in enumerate(report.lead_minutes)
            if m <= 60 and not sign * (ours[k] - theirs[k]) > 0
        ]
        verdict = "yes" if not lost else f"NO at {', '.join(lost)} min"
        lines.append(f"stretch, {label}: {verdict}")
    return lines


def _against(report, path: Path) -> str:
    """The verdict of `report`'s model against the model of an earlier run's JSON at `path`."""
    import json

    from nowcastd.verification.skill import scores_from_json
    from nowcastd.verification.verdict import judge

    if not path.is_file():
        return f"{report.name}: vs the earlier model: no {path.name} in {path.parent}"
    earlier = json.loads(path.read_text())
    if tuple(earlier["lead_minutes"]) != report.lead_minutes:
        return f"{report.name}: vs the earlier model: other lead times in {path.name}"
    model = report.methods["model"]
    nan = {
        k: [float("nan") if v is None else v for v in vs]
        for k, vs in earlier["methods"]["model"].items()
    }
    before = scores_from_json(nan, model.neighbourhood)
    verdict = judge(model, before, report.lead_minutes, baseline="the earlier model")
    return f"{report.name}: {verdict.describe()}"


def _load(args: argparse.Namespace):
    from model.strategy import parse_strategy
    from nowcastd.io.model_checkpoint import load_model

    try:
        strategy = parse_strategy(args.strategy)
    except ValueError as e:
        raise SystemExit(f"bench_evaluate: --strategy: {e}") from None
    loaded = load_model(args.checkpoint)
    loaded = dataclasses.replace(loaded, strategy=strategy)
    if args.match_intensity != "checkpoint":
        cfg = dataclasses.replace(loaded.cfg, match_intensity=args.match_intensity == "1")
        loaded = dataclasses.replace(loaded, network=loaded.network.with_inference_options(cfg))
    cfg = loaded.cfg
    print(
        f"checkpoint {loaded.path} ({cfg.model_name}, {cfg.input_length} inputs, "
        f"sha256 {loaded.digest[:12]}, lagrangian {int(cfg.lagrangian)}, match_intensity "
        f"{int(cfg.match_intensity)}); strategy {strategy.name}"
    )
    return loaded


def _jobs(args: argparse.Namespace):
    """(name, movie path, frames slice, lead frames, crops) of each set to score."""
    if args.data is not None:
        return [(args.data.name, args.data, None, args.lead_frames, MCH_CROPS)]
    import h5py
    import numpy as np

    wanted = SET_NAMES if args.sets == "all" else tuple(args.sets.split(","))
    unknown = [w for w in wanted if w not in SET_NAMES]
    if unknown:
        raise SystemExit(f"bench_evaluate: --sets: unknown {unknown}; expected {SET_NAMES}")
    jobs = []
    for v in VALIDATION_SETS:
        if v.name in wanted:
            path = args.radar_dir / v.file
            with h5py.File(path, "r") as h:
                frames = v.frames(np.asarray(h["time_unix"][:], np.int64))
            jobs.append((v.name, path, frames, min(args.lead_frames, v.lead_frames), v.crops))
    return jobs


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from nowcastd.verification.comparison import compare, format_comparison, pool, write_json
    from nowcastd.verification.figures import save_lead_time_plot
    from nowcastd.verification.sequence import read_movie_sequence

    loaded = _load(args)
    resolutions = RESOLUTIONS if args.resolution == "all" else (args.resolution,)
    summary = []
    for res in resolutions:
        reports = []
        for name, path, frames, leads, crops in _jobs(args):
            crop, block = crops[res]
            t0 = time.perf_counter()
            seq = read_movie_sequence(path, crop=crop, block=block, frames=frames)
            report = compare(
                loaded, seq, lead_frames=leads, batch_size=args.batch_size, name=f"{name} {res}"
            )
            seconds = time.perf_counter() - t0
            print(
                f"\n== {name} at {res}: {path.name}, crop {crop}, block {block} ({seconds:.1f} s)"
            )
            print(format_comparison(report))
            print("\n".join(_stretch(report)))
            timing = ", ".join(f"{m} {s:.1f} s" for m, s in report.seconds.items())
            print(f"time per method (model includes compilation): {timing}")
            summary += [f"{report.name}: {v.describe()}" for v in report.verdicts()]
            if args.against is not None:
                summary.append(_against(report, args.against / f"{name}_{res}.json"))
            reports.append(report)
            if args.out_dir is not None:
                write_json(args.out_dir / f"{name}_{res}.json", report)
                save_lead_time_plot(args.out_dir / f"{name}_{res}.png", report)
        if len(reports) > 1:
            pooled = pool(reports, name=f"pooled {res}")
            print(f"\n== pooled at {res}")
            print(format_comparison(pooled))
            summary += [f"{pooled.name}: {v.describe()}" for v in pooled.verdicts()]
            if args.against is not None:
                summary.append(_against(pooled, args.against / f"pooled_{res}.json"))
            if args.out_dir is not None:
                write_json(args.out_dir / f"pooled_{res}.json", pooled)
    print("\n== verdicts")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
