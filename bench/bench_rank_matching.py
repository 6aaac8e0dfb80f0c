"""What rank matching to the advected newest scan (`--match_extrapolation 1`) costs a forecast.

Times the bundled model's compiled rollout in mm/h (`nowcast.rollout_rates_jit`, the program
evaluate runs and serve compiles), as it is and with `match_extrapolation` on, on the same
weights, window and motion, interleaved round by round:

    PYTHONPATH=. python bench/bench_rank_matching.py --grid 64 --batch 1 --rounds 5 --reps 10

Prints the median and p90 milliseconds per call of each, and the difference.
"""

import argparse
import copy
import dataclasses

import jax.numpy as jnp
import numpy as np
from timing import warm_ms

from nowcastd.io.model_checkpoint import load_model
from nowcastd.nowcast import rollout_rates_jit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=64, help="square model grid, pixels")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--leads", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()

    loaded = load_model(None)
    plain = loaded.network
    matched = copy.copy(plain)  # the same weights under the option (a training-time field)
    cfg = dataclasses.replace(plain.cfg, match_intensity=False, match_extrapolation=True)
    object.__setattr__(matched, "cfg", cfg)
    rng = np.random.default_rng(0)
    shape = (args.batch, plain.cfg.input_length, args.grid, args.grid, 1)
    context = jnp.asarray(rng.gamma(0.6, 0.2, shape) * (rng.random(shape) < 0.5), jnp.float32)
    motion = jnp.full((args.batch, args.grid, args.grid, 2), 1.5, jnp.float32)
    times: dict[str, list[np.ndarray]] = {"plain": [], "matched": []}
    for _ in range(args.rounds):
        for name, network in (("plain", plain), ("matched", matched)):
            call = (network, loaded.transform, context, args.leads, motion)
            times[name].append(warm_ms(rollout_rates_jit, *call, repeats=args.reps))
    print(
        f"bundled model rollout, {args.batch}x{plain.cfg.input_length}x{args.grid}x{args.grid} "
        f"-> {args.leads} leads, {args.rounds} rounds x {args.reps} calls"
    )
    medians = {}
    for name, rounds in times.items():
        ms = np.concatenate(rounds)
        medians[name] = float(np.median(ms))
        print(f"  {name:8s} median {medians[name]:8.2f} ms  p90 {np.percentile(ms, 90):8.2f} ms")
    print(f"  match_extrapolation adds {medians['matched'] - medians['plain']:+.2f} ms (median)")


if __name__ == "__main__":
    main()
