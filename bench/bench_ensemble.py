"""Cost of the daemon's ensemble stage, stage by stage, beside the deterministic rollout.

Run from the repository root:

    PYTHONPATH=. python bench/bench_ensemble.py                      # 20 members, 64 and 128
    PYTHONPATH=. python bench/bench_ensemble.py --members 50 --sizes 256 --design perturb

The bundled model forecasts 12 leads from windows of the bundled KNMI sample movie (64 x 64
at 4 km; for larger grids each pixel is repeated 2 x 2 or 4 x 4 times: the same rain on a
larger grid, which is what the cost depends on). `--halo PX` gives the windows a halo of PX
pixels on every side, as the daemon's default halo does on the demo's grid (32). For each design ("perturb": the network
once, the members perturb its forecast; "network": the network for every member) it prints
the median and p99 in ms of

- motion: the Lucas-Kanade optical flow (shared with the deterministic forecast),
- rollout: the deterministic forecast (`rollout_rates`, compiled ahead of time),
- perturbations: the host's pysteps part (noise spectrum, BPS draws),
- members: the compiled ensemble program (`EnsembleProgram`),
- products: exceedance probabilities at 0.1, 1, 5, 10 mm/h and the mean on the host,
- ensemble: perturbations + members + products, what the "ensemble" stage adds per scan.

One untimed call comes first. The figures are for the machine it runs on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = REPO / "nowcastd" / "sample" / "knmi_20100826_64px.h5"
THRESHOLDS = (0.1, 1.0, 5.0, 10.0)


def _windows(size: int, count: int, inputs: int) -> list[np.ndarray]:
    """`count` windows (1, I, size, size) mm/h from the sample movie's rainiest stretch."""
    with h5py.File(SAMPLE, "r") as f:
        movie = f["precip"][...].astype(np.float32)
    factor = -(-size // movie.shape[-1])
    movie = np.kron(movie, np.ones((factor, factor), np.float32)) if factor > 1 else movie
    start = 30
    movie = movie[..., :size, :size]
    return [movie[start + i : start + i + inputs][None] for i in range(count)]


@contextlib.contextmanager
def _lap(times: list[float]) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    times.append(time.perf_counter() - t0)


def _line(name: str, times: list[float]) -> str:
    ms = np.asarray(times) * 1e3
    return f"  {name:<14} median {np.median(ms):8.1f} ms   p99 {np.percentile(ms, 99):8.1f} ms"


def bench(size: int, members: int, design: str, repeats: int, leads: int, halo: int) -> None:
    from nowcastd.data.motion import MotionEstimator
    from nowcastd.ensemble import EnsembleProgram, EnsembleSettings, products
    from nowcastd.ensemble.perturbations import estimate_perturbations
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.nowcast import Window, rollout_rates_jit

    model = load_model(None)
    settings = EnsembleSettings(members=members, design=design, thresholds_mm_h=THRESHOLDS)
    program = EnsembleProgram(
        model.network, model.transform, settings, num_leads=leads, grid=(size, size), margin=halo
    )
    compile_seconds = program.compile()
    flow_of = MotionEstimator(model.motion_method)
    stages: dict[str, list[float]] = {k: [] for k in ("motion", "rollout", "perturbations")}
    stages.update(members=[], products=[], ensemble=[])
    windows = _windows(size + 2 * halo, repeats + 1, model.cfg.input_length)
    for i, rates in enumerate(windows):
        window = Window.from_rates(rates, model.transform, margin=halo)
        assert window.motion is not None
        with _lap(stages["motion"]):
            flow = flow_of.batch(window.motion)
        with _lap(stages["rollout"]):
            np.asarray(
                rollout_rates_jit(model.network, model.transform, window.context, leads, flow)
            )
        context = np.asarray(window.context)
        with _lap(stages["perturbations"]):
            p = estimate_perturbations(context[:, -1, ..., 0], leads, settings, seed=i)
        with _lap(stages["members"]):
            out = program(window.context, flow, p)
        with _lap(stages["products"]):
            products(out[0], THRESHOLDS)
        if i == 0:  # the untimed first call
            for times in stages.values():
                times.clear()
            continue
        parts = ("perturbations", "members", "products")
        stages["ensemble"].append(sum(stages[k][-1] for k in parts))
    print(f"{size} x {size} (halo {halo}), {members} members, {leads} leads, design {design} "
          f"(compiled in {compile_seconds:.1f} s), {repeats} windows:")  # fmt: skip
    for name, times in stages.items():
        print(_line(name, times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--leads", type=int, default=12)
    parser.add_argument("--sizes", default="64,128", help="grid sides, comma-separated")
    parser.add_argument("--design", default="perturb,network", help="perturb, network or both")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--halo", type=int, default=0, help="pixels around the grid (demo: 32)")
    args = parser.parse_args()
    import jax

    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs")
    for size in (int(s) for s in args.sizes.split(",")):
        for design in args.design.split(","):
            repeats = args.repeats if design == "perturb" else max(3, args.repeats // 4)
            bench(size, args.members, design, repeats, args.leads, args.halo)


if __name__ == "__main__":
    main()
