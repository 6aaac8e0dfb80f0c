"""Training throughput of the `nowcastd train` loop: sequences per second and compile time.

Run from the repository root (CPU, float32):

    PYTHONPATH=. python bench/bench_train.py --config seed --iterations 30
    PYTHONPATH=. python bench/bench_train.py --config radar --iterations 3 --json

It drives the real loop pieces (memory-mapped .npy clips in a temporary directory,
`BatchIterator`, the jitted `make_train_step` with run.py's default `--reverse_input 1`,
i.e. two Adam steps per iteration) and reports the first iteration (compile + run),
then the median and p90 iteration time and sequences/s over the rest. bench_model.py
times the official code beside ours. The model configurations are those of bench_model.py. Nothing asserts on time.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import CONFIGS  # noqa: E402

from model.network import PredRNN  # noqa: E402
from model.sampling import SamplingConfig  # noqa: E402
from model.train import adam, init_train_state, make_train_step  # noqa: E402
from nowcastd.data.loader import BatchIterator  # noqa: E402
from nowcastd.data.npy_clips import read_npy_clips  # noqa: E402


def bench(name: str, iterations: int, reverse_input: bool) -> dict:
    spec = CONFIGS[name]
    cfg, batch = spec["cfg"], spec["train_batch"]
    with tempfile.TemporaryDirectory() as tmp:
        shape = (max(4 * batch, 8), cfg.total_length, cfg.img_height, cfg.img_width, 1)
        path = Path(tmp) / "clips.npy"
        np.save(path, np.random.default_rng(0).random(shape, dtype=np.float32))
        batches = BatchIterator(read_npy_clips(path), batch, np.random.default_rng(0))
        opt = adam(1e-3)
        state = init_train_state(PredRNN(cfg, key=jax.random.key(0)), opt, jax.random.key(1))
        sampling = SamplingConfig(r_sampling_step_1=0.0, r_sampling_step_2=50000)
        step = make_train_step(opt, sampling, reverse_input=reverse_input)
        t0 = time.perf_counter()
        state, m = step(state, next(batches))
        m.loss.block_until_ready()
        first = time.perf_counter() - t0
        times = []
        for _ in range(iterations):
            t = time.perf_counter()
            state, m = step(state, next(batches))
            m.loss.block_until_ready()
            times.append(time.perf_counter() - t)
    med = float(np.median(times))
    return {
        "config": name,
        "batch": batch,
        "reverse_input": reverse_input,
        "first_iteration_s": first,
        "iteration_median_s": med,
        "iteration_p90_s": float(np.percentile(times, 90)),
        "sequences_per_s": batch / med,
        "load_avg_1m": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=("seed", "radar", "all"), default="seed")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--reverse_input", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    names = ("seed", "radar") if a.config == "all" else (a.config,)
    for name in names:
        r = bench(name, a.iterations, bool(a.reverse_input))
        if a.json:
            print(json.dumps(r))
            continue
        print(
            f"{name}: batch {r['batch']}, reverse_input {int(r['reverse_input'])}, load {r['load_avg_1m']:.2f}"
        )
        print(f"  first iteration (compile + run) {r['first_iteration_s']:.2f} s")
        print(
            f"  iteration median {r['iteration_median_s']:.3f} s, p90 {r['iteration_p90_s']:.3f} s, "
            f"{r['sequences_per_s']:.1f} sequences/s"
        )


if __name__ == "__main__":
    main()
