"""Benchmark the PredRNN-v2 training step and inference rollout against the official figures.

Run from the repository root (CPU, float32):

    PYTHONPATH=. python bench/bench_model.py --config all
    PYTHONPATH=. python bench/bench_model.py --config radar --repeats 5 --json
    PYTHONPATH=. python bench/bench_model.py --xla-flags "--xla_cpu_use_thunk_runtime=false"

For each configuration it reports the compile time, the median and p90 wall time of
(a) one training step (forward + backward + one Adam step, like the official
`Model.train`) and (b) one jitted inference rollout (no gradient), the achieved
GFLOP/s from XLA's cost analysis next to an analytic count, a measured matmul peak
(2048^3 float32 `jnp.dot`) in the same process, and the ratio to the official
PyTorch timings (REFERENCE.md, "Timings"). The 1-minute load average is printed
before and after each measurement: on a shared machine, compare medians only from
quiet runs. Nothing here asserts on time.
"""

import argparse
import json
import os
import sys
import time
import warnings


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("seed", "radar", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (>= 5 advised)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
    parser.add_argument("--json", action="store_true", help="one JSON object per config")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-infer", action="store_true")
    parser.add_argument(
        "--xla-flags", default="", help="appended to XLA_FLAGS before jax is imported"
    )
    return parser.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.xla_flags:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + ARGS.xla_flags).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from model.config import ModelConfig  # noqa: E402
from model.network import PredRNN  # noqa: E402
from model.rollout import rollout_jit  # noqa: E402
from model.sampling import SamplingConfig  # noqa: E402
from model.train import adam, init_train_state, make_train_step  # noqa: E402

# Official predrnn_v2, torch 2.13.0+cpu, 2 threads, this machine kind (REFERENCE.md, Timings).
# `*_cpu_s` is the official process CPU time per call (both threads).
OFFICIAL = {
    "seed": {
        "train_s": 0.395,
        "infer_test_s": 0.162,
        "infer_nograd_s": 0.152,
        "train_cpu_s": 0.78,
        "infer_nograd_cpu_s": 0.30,
    },
    "radar": {
        "train_s": 27.8,
        "infer_test_s": 2.37,
        "infer_nograd_s": 2.21,
        "train_cpu_s": 54.8,
        "infer_nograd_cpu_s": 4.41,
    },
}


def _square_v2(size: int, hidden: tuple[int, ...], frames: tuple[int, int], **more) -> ModelConfig:
    """predrnn_v2 on a size x size grid, `frames` = (input, total) lengths; other fields at
    ModelConfig's defaults (filter 5, patch 4, no layer norm) unless given in `more`."""
    grid = {"img_height": size, "img_width": size}
    return ModelConfig(
        num_hidden=hidden, input_length=frames[0], total_length=frames[1], **grid, **more
    )


CONFIGS = {
    "seed": dict(cfg=_square_v2(40, (16,) * 5, (4, 5)), train_batch=16, infer_batch=16),
    "radar": dict(
        cfg=_square_v2(
            128, (64,) * 4, (10, 20), decouple_beta=0.01, reverse_scheduled_sampling=True
        ),
        train_batch=4,
        infer_batch=1,
    ),
}


def analytic_forward_flops(cfg: ModelConfig) -> float:
    """Multiply-adds x 2 of the official forward (its unfused convs), per sequence, T-1 steps."""
    hp, wp = cfg.patch_shape
    n, k2 = cfg.hidden, cfg.filter_size**2
    per_pixel = 0
    for layer in range(cfg.num_layers):
        c_in = cfg.patch_channels if layer == 0 else n
        per_pixel += k2 * (c_in * 7 * n + n * 4 * n + n * 3 * n + 2 * n * n) + 2 * n * n
    per_pixel += n * cfg.patch_channels  # frame decoder
    return 2.0 * per_pixel * hp * wp * (cfg.total_length - 1)


def _load() -> float:
    return os.getloadavg()[0]


def _time_calls(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return times


def _stats(times: list[float]) -> tuple[float, float]:
    return float(np.median(times)), float(np.percentile(times, 90))


def _flops(compiled) -> float | None:
    compiled = getattr(compiled, "compiled", compiled)  # equinox wraps jax's Compiled
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def xla_forward_gflop(cfg: ModelConfig, batch: int) -> float | None:
    """XLA's flop count of one jitted `PredRNN.step` x (T-1) steps, in GFLOP.

    XLA's cost analysis counts a while-loop body once, so the whole-program counts
    of the scanned train step and rollout undercount; this per-step figure is the one
    to compare with the analytic count.
    """
    net = PredRNN(cfg, key=jax.random.key(0))
    frame = jnp.zeros((batch, *cfg.patch_shape, cfg.patch_channels), jnp.float32)

    def one(net, frame):
        carry = net.zero_carry(batch)
        return net.step(carry, frame, fused=net.fused_weights(), with_decouple=False)[1].frame

    flops = _flops(jax.jit(one).lower(net, frame).compile())
    return None if flops is None else flops * (cfg.total_length - 1) / 1e9


def matmul_peak(repeats: int = 10, size: int = 2048) -> float:
    """Median GFLOP/s of a float32 size^3 jnp.dot."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    jax.block_until_ready(dot(a, b))
    times = _time_calls(lambda: dot(a, b), repeats)
    return 2.0 * size**3 / float(np.median(times)) / 1e9


def _measure(what: str, compile_, call, *, repeats: int, warmup: int, analytic: float) -> dict:
    """Compile, one first call, `warmup` untimed and `repeats` timed calls of `call`."""
    load0 = _load()
    t0 = time.perf_counter()
    compiled = compile_()
    compile_s = time.perf_counter() - t0
    flops = _flops(compiled)
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    first_s = time.perf_counter() - t0
    for _ in range(warmup):
        jax.block_until_ready(call())
    cpu0 = time.process_time()
    times = _time_calls(call, repeats)
    cpu_s = (time.process_time() - cpu0) / repeats
    median, p90 = _stats(times)
    return {
        f"{what}_median_s": median,
        f"{what}_p90_s": p90,
        f"{what}_min_s": min(times),
        f"{what}_cpu_s": cpu_s,
        f"{what}_compile_s": compile_s,
        f"{what}_first_call_s": first_s,
        f"{what}_xla_gflop": None if flops is None else flops / 1e9,
        f"{what}_analytic_gflop": analytic / 1e9,
        f"{what}_gflops": analytic / median / 1e9,
        f"{what}_load": [load0, _load()],
    }


def bench_train(name: str, repeats: int, warmup: int) -> dict:
    spec = CONFIGS[name]
    cfg, batch = spec["cfg"], spec["train_batch"]
    optimizer = adam(1e-4)
    step = make_train_step(optimizer, SamplingConfig(), reverse_input=False)
    shape = (batch, cfg.total_length, cfg.img_height, cfg.img_width, cfg.img_channel)
    clips = jax.random.uniform(jax.random.key(1), shape, jnp.float32)
    holder = [init_train_state(PredRNN(cfg, key=jax.random.key(0)), optimizer, jax.random.key(2))]
    metrics = []

    def call():  # the step donates its state: carry it from call to call
        holder[0], m = step(holder[0], clips)
        metrics[:] = [m]
        return m

    result = _measure(
        "train",
        lambda: step.lower(holder[0], clips).compile(),
        call,
        repeats=repeats,
        warmup=warmup,
        analytic=3.0 * batch * analytic_forward_flops(cfg),
    )
    return result | {"train_loss": float(metrics[0].loss)}


def bench_infer(name: str, repeats: int, warmup: int) -> dict:
    spec = CONFIGS[name]
    cfg, batch = spec["cfg"], spec["infer_batch"]
    net = PredRNN(cfg, key=jax.random.key(0))
    shape = (batch, cfg.input_length, cfg.img_height, cfg.img_width, cfg.img_channel)
    context = jax.random.uniform(jax.random.key(1), shape, jnp.float32)
    leads = cfg.output_length
    result = _measure(
        "rollout",
        lambda: rollout_jit.lower(net, context, leads).compile(),
        lambda: rollout_jit(net, context, leads),
        repeats=repeats,
        warmup=warmup,
        analytic=batch * analytic_forward_flops(cfg),
    )
    if not bool(jnp.all(jnp.isfinite(rollout_jit(net, context, leads)))):
        print(f"warning: {name} rollout produced non-finite values", file=sys.stderr)
    return result


def run_config(name: str, args: argparse.Namespace, peak: float) -> dict:
    result: dict = {"config": name, "matmul_peak_gflops": peak}
    cfg = CONFIGS[name]["cfg"]
    result["forward_analytic_gflop_per_seq"] = analytic_forward_flops(cfg) / 1e9
    result["forward_xla_gflop_per_seq"] = xla_forward_gflop(cfg, 1)
    if not args.skip_train:
        result |= bench_train(name, args.repeats, args.warmup)
    if not args.skip_infer:
        result |= bench_infer(name, args.repeats, args.warmup)
    off = OFFICIAL[name]
    result["compile_s"] = result.get("train_compile_s", 0.0) + result.get("rollout_compile_s", 0.0)
    result["official"] = off
    if "train_median_s" in result:
        result["train_ratio"] = result["train_median_s"] / off["train_s"]
        result["train_peak_fraction"] = result["train_gflops"] / peak
    if "rollout_median_s" in result:
        result["rollout_ratio_test"] = result["rollout_median_s"] / off["infer_test_s"]
        result["rollout_ratio_nograd"] = result["rollout_median_s"] / off["infer_nograd_s"]
        result["rollout_peak_fraction"] = result["rollout_gflops"] / peak
    return result


def print_table(results: list[dict]) -> None:
    head = (
        f"{'config':<6} {'what':<8} {'compile s':>9} {'median s':>9} {'p90 s':>8} "
        f"{'min s':>8} {'cpu s':>7} {'GFLOP':>7} {'GFLOP/s':>8} {'%peak':>6} {'official s':>16} {'ours/off':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        off = r["official"]
        if "train_median_s" in r:
            print(
                f"{r['config']:<6} {'train':<8} {r['train_compile_s']:>9.1f} "
                f"{r['train_median_s']:>9.3f} {r['train_p90_s']:>8.3f} "
                f"{r['train_min_s']:>8.3f} {r['train_cpu_s']:>7.2f} "
                f"{r['train_analytic_gflop']:>7.1f} {r['train_gflops']:>8.1f} "
                f"{100 * r['train_peak_fraction']:>5.0f}% {off['train_s']:>16.3f} "
                f"{r['train_ratio']:>9.2f}"
            )
        if "rollout_median_s" in r:
            print(
                f"{r['config']:<6} {'rollout':<8} {r['rollout_compile_s']:>9.1f} "
                f"{r['rollout_median_s']:>9.3f} {r['rollout_p90_s']:>8.3f} "
                f"{r['rollout_min_s']:>8.3f} {r['rollout_cpu_s']:>7.2f} "
                f"{r['rollout_analytic_gflop']:>7.1f} {r['rollout_gflops']:>8.1f} "
                f"{100 * r['rollout_peak_fraction']:>5.0f}% "
                f"{off['infer_test_s']:>7.3f} / {off['infer_nograd_s']:<6.3f} "
                f"{r['rollout_ratio_test']:>4.2f}/{r['rollout_ratio_nograd']:.2f}"
            )
    print()
    for r in results:
        xla = [
            f"forward per sequence: analytic {r['forward_analytic_gflop_per_seq']:.1f} GFLOP, "
            f"XLA (one step x T-1) {r['forward_xla_gflop_per_seq'] or float('nan'):.1f} GFLOP "
            "(XLA skips the zero-padding taps)"
        ]
        loads = [
            f"{w} load {r[k][0]:.2f}->{r[k][1]:.2f}"
            for w, k in (("train", "train_load"), ("rollout", "rollout_load"))
            if k in r
        ]
        print(
            f"{r['config']}: matmul peak {r['matmul_peak_gflops']:.0f} GFLOP/s; "
            + "; ".join(xla + loads)
        )
    print(
        "GFLOP = analytic count of the official convs (train = 3x forward); GFLOP/s and %peak "
        "use the median. Whole-program XLA counts (in --json) count scan bodies once.\n"
        "cpu s = process CPU time per call (official: seed 0.78 train / 0.30 infer, radar 54.8 / "
        "4.41).\nofficial = REFERENCE.md Timings (rollout: Model.test / no-grad), measured idle; "
        "compare min s when the load average is high."
    )


def main(args: argparse.Namespace) -> None:
    # make_train_step donates all arguments; the clips buffer is not reusable, which is fine.
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    names = ("seed", "radar") if args.config == "all" else (args.config,)
    results = []
    for name in names:
        r = run_config(name, args, matmul_peak())  # measured next to each config
        results.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
    if not args.json:
        print(f"jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
        print_table(results)


if __name__ == "__main__":
    main(ARGS)
