"""Time PredRNN-v2 against the official PyTorch code, side by side in one run.

Run from the repository root (float32, on JAX's default device):

    PYTHONPATH=. python bench/bench_model.py --config seed
    PYTHONPATH=. python bench/bench_model.py --scenario radar_rollout --rounds 5 --reps 2 --json
    PYTHONPATH=. python bench/bench_model.py --xla-flags "--xla_cpu_use_thunk_runtime=false"

The official side runs only when a python with torch and an official checkout are given
(`--torch-python`/TORCH_PY, `--predrnn-repo`/PREDRNN_REPO; README, "Benchmarks"); without them
the bench says "no reference measured" and prints our figures alone. It never prints a figure
that was not measured in this run.

Scenarios (configurations as in the official timer's CFG: filter 5, patch 4, stride 1, no layer
norm, Adam with lr 1e-3; seed: 5x16 hidden, 40x40, T 5, input 4, decouple_beta 0.1, scheduled
sampling; radar: 4x64 hidden, 128x128, 10 -> 10 frames, decouple_beta 0.01, reverse scheduled
sampling):

- seed_train (batch 16) and radar_train (batch 4), against `seed_train_b16`/`radar_train_b4`.
  Ours: one call of the jitted `make_train_step` (reverse_input off): patching, drawing the
  sampling mask, forward over T-1 steps, MSE + decoupling loss, gradients, Adam update; as
  `nowcastd train` runs it on a CPU, data parallel over one host device per core
  (`--cpu-devices`).
  Official: one `Model.train(frames, mask)` on pre-patched frames and a NumPy mask: forward,
  the same loss, backward, Adam step.
- radar_rollout (batch 1), against `radar_test_b1`. Ours: one `rollout_jit` call, 10 context
  frames to 10 leads (19 steps), no gradient tape, no decoupling loss. Official: one
  `Model.test(frames, mask)` with the test-time mask: the same 19 steps, with autograd on and
  the loss computed, output copied to NumPy.

Strategies (`model.strategy`): with `--strategy auto` (the default) each scenario's program
runs the strategy `nowcastd` picks on this machine: the candidates timed at first use within
`--strategy-budget` seconds, or the choice cached by an earlier run (`nowcastd.strategy`); the
training scenarios' CPU device count is timed in child processes as `nowcastd train` does, for
the first training scenario selected. `--strategy default` or a NAME sets it. The bench
prints what each scenario ran and every candidate's seconds per call.

Interleaved: our function is compiled once; then each of `rounds` rounds times `reps` of our
calls and then one official subprocess (REPS=reps; its warm-up calls are untimed, so the official
side re-warms each round). Our GFLOP/s use an analytic count of the official convs (train =
3x forward) over our median, against the best matmul rate this CPU reached beside each
scenario (several sizes, the best of a few runs each; in bfloat16 for a `bf16=on` strategy, else
float32), so that "%peak" stays under 100 %. The
1-minute load average before and after each scenario tells a quiet run from a busy one.
Nothing here asserts on time.
"""

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official import HOW_TO_ENABLE, Official, OfficialError, find_official  # noqa: E402
from timing import time_calls  # noqa: E402


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scenario:
    config: str
    kind: str  # "train" or "rollout"
    official: str  # the official timer's scenario
    rounds: int
    reps: int
    target: float  # the ratio of medians (ours / official) to reach or beat


SCENARIOS = {
    "seed_train": Scenario(
        config="seed", kind="train", official="seed_train_b16", rounds=4, reps=5, target=0.6
    ),
    "radar_rollout": Scenario(
        config="radar", kind="rollout", official="radar_test_b1", rounds=5, reps=2, target=0.8
    ),
    "radar_train": Scenario(
        config="radar", kind="train", official="radar_train_b4", rounds=2, reps=2, target=0.8
    ),
}


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("seed", "radar", "all"), default="all")
    parser.add_argument(
        "--scenario", help=f"comma-separated, overrides --config; of {','.join(SCENARIOS)}"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default per scenario)")
    parser.add_argument(
        "--reps", type=int, help="timed calls per side and round (default per scenario)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="our untimed calls after compiling")
    parser.add_argument(
        "--torch-python", default=os.environ.get("TORCH_PY"), help="a python with torch (TORCH_PY)"
    )
    parser.add_argument(
        "--predrnn-repo",
        default=os.environ.get("PREDRNN_REPO"),
        help="a checkout of the official code (PREDRNN_REPO)",
    )
    parser.add_argument(
        "--torch-bench",
        type=Path,
        default=root.parent / "shared" / "bench" / "torch_time.py",
        help="the official timer (default ../shared/bench/torch_time.py)",
    )
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=0,
        help="host devices the training scenarios split the CPU into, as `nowcastd train "
        "--cpu_devices` (0: as many cores as divide the batches)",
    )
    parser.add_argument(
        "--strategy",
        default="auto",
        help="auto: the strategy nowcastd picks here (timed, or cached); default, or a name "
        "such as ynn=off,wgrad=96,unroll=auto",
    )
    parser.add_argument(
        "--strategy-budget",
        type=float,
        default=120.0,
        help="seconds per scenario for timing candidate strategies (auto, not cached)",
    )
    parser.add_argument("--no-official", action="store_true", help="time our side only")
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    parser.add_argument(
        "--xla-flags", default="", help="appended to XLA_FLAGS before jax is imported"
    )
    args = parser.parse_args(argv)
    names = (
        args.scenario.split(",")
        if args.scenario
        else [n for n, s in SCENARIOS.items() if args.config in ("all", s.config)]
    )
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"--scenario: expected some of {','.join(SCENARIOS)}, got {','.join(unknown)}")
    if (args.rounds is not None and args.rounds < 1) or (args.reps is not None and args.reps < 1):
        parser.error("--rounds and --reps must be >= 1")
    from nowcastd.strategy.search import parse_setting as parse

    try:
        args.strategy = parse(args.strategy)
    except ValueError as e:
        parser.error(f"--strategy: {e}, got {args.strategy!r}")
    args.names = names
    return args


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.xla_flags:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + ARGS.xla_flags).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from model.compile import compile_program  # noqa: E402
from model.config import ModelConfig  # noqa: E402
from model.network import PredRNN  # noqa: E402
from model.rollout import rollout  # noqa: E402
from model.sampling import SamplingConfig  # noqa: E402
from model.strategy import DEFAULT, Strategy  # noqa: E402
from model.train import adam, init_train_state, make_train_step  # noqa: E402
from nowcastd.settings import strategy_cache_dir  # noqa: E402
from nowcastd.strategy.cache import StrategyCache  # noqa: E402
from nowcastd.strategy.machine import cpu_model  # noqa: E402
from nowcastd.strategy.search import Choice, Program, choose, parse_setting  # noqa: E402, F401 (profile_model)
from nowcastd.train.cpu_devices import cpu_devices_for_run  # noqa: E402
from nowcastd.train.sharding import DataParallel, cpu_devices_for, split_cpu  # noqa: E402, F401 (profile_model)
from nowcastd.train.step_strategy import step_program  # noqa: E402


def _square_v2(size: int, hidden: tuple[int, ...], frames: tuple[int, int], **more) -> ModelConfig:
    """predrnn_v2 on a size x size grid, `frames` = (input, total) lengths; other fields at
    ModelConfig's defaults (filter 5, patch 4, stride 1, no layer norm, decouple_beta 0.1)."""
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


def _stats(times: list[float]) -> dict:
    return {
        "median_s": float(np.median(times)),
        "p90_s": float(np.percentile(times, 90)),
        "min_s": min(times),
        "times_s": times,
    }


def matmul_peak(
    sizes: tuple[int, ...] = (512, 1024, 2048, 3072), runs: int = 5, *, bf16: bool = False
) -> float:
    """The best GFLOP/s of an n^3 jnp.dot over `sizes`, the fastest of `runs` calls of each
    (after two untimed ones): the most this CPU reaches on a matmul, the reference that keeps
    "%peak" under 100 %. Float32, or with `bf16` bfloat16 operands summed in float32 (the
    matmuls of a `bf16=on` strategy)."""
    dtype = jnp.bfloat16 if bf16 else jnp.float32
    dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    best = 0.0
    for size in sizes:
        a = jax.random.normal(jax.random.key(0), (size, size), dtype)
        b = jax.random.normal(jax.random.key(1), (size, size), dtype)
        for _ in range(2):
            jax.block_until_ready(dot(a, b))
        fastest = min(time_calls(lambda a=a, b=b: dot(a, b), runs))
        best = max(best, 2.0 * size**3 / fastest / 1e9)
    return best


def ours(kind: str, cfg: ModelConfig, batch: int, strategy: Strategy = DEFAULT):
    """(compile, call, analytic FLOPs per call) of our side of a scenario under `strategy`."""
    if kind == "rollout":
        net = PredRNN(cfg, key=jax.random.key(0))
        shape = (batch, cfg.input_length, cfg.img_height, cfg.img_width, cfg.img_channel)
        context = jax.random.uniform(jax.random.key(1), shape, jnp.float32)
        leads = cfg.output_length
        jitted = compile_program(rollout, strategy, inference=True)
        return (
            lambda: jitted.lower(net, context, leads).compile(),
            lambda: jitted(net, context, leads),
            batch * analytic_forward_flops(cfg),
        )
    optimizer = adam(1e-3)
    # as `nowcastd train` runs it: the batch sharded over the devices, the state replicated
    parallel = DataParallel.create()
    step = make_train_step(
        optimizer, SamplingConfig(), reverse_input=False, mesh=parallel.mesh, strategy=strategy
    )
    shape = (batch, cfg.total_length, cfg.img_height, cfg.img_width, cfg.img_channel)
    clips = jax.random.uniform(jax.random.key(1), shape, jnp.float32)
    clips = parallel.shard(np.asarray(clips))
    state = init_train_state(PredRNN(cfg, key=jax.random.key(0)), optimizer, jax.random.key(2))
    holder = [parallel.replicate(state)]

    def call():  # the step donates its state: carry it from call to call
        holder[0], metrics = step(holder[0], clips)
        return metrics

    return (
        lambda: step.lower(holder[0], clips).compile(),
        call,
        3.0 * batch * analytic_forward_flops(cfg),
    )


def program(kind: str, cfg: ModelConfig, batch: int) -> Program:
    """The scenario's program as `nowcastd` caches its strategy."""
    if kind == "rollout":
        shapes = f"{batch}x{cfg.input_length}x{cfg.img_height}x{cfg.img_width}x1 float32"
        shapes += f", {cfg.output_length} leads"
        return Program(name="rollout", shapes=shapes, cfg=cfg, batch=batch, inference=True)
    devices = len(jax.devices())
    shape = (batch, cfg.total_length, cfg.img_height, cfg.img_width, cfg.img_channel)
    per_shard = batch // devices if devices > 1 else batch
    return step_program(cfg, shape, batch=per_shard, devices=devices, reverse_input=False)


def chosen(kind: str, cfg: ModelConfig, batch: int, setting, budget: float) -> Choice:
    """The strategy of a scenario: `setting`, or with "auto" timed here (or cached)."""

    def build(strategy: Strategy):
        compile_, call, _ = ours(kind, cfg, batch, strategy)
        compile_()
        return call

    cache = StrategyCache(strategy_cache_dir(os.environ))
    return choose(program(kind, cfg, batch), build, setting=setting, cache=cache, budget=budget)


def run_scenario(name: str, args: argparse.Namespace, official: Official | str) -> dict:
    sc = SCENARIOS[name]
    rounds, reps = args.rounds or sc.rounds, args.reps or sc.reps
    spec = CONFIGS[sc.config]
    batch = spec["train_batch" if sc.kind == "train" else "infer_batch"]
    load0 = os.getloadavg()[0]
    choice = chosen(sc.kind, spec["cfg"], batch, args.strategy, args.strategy_budget)
    peak = matmul_peak(bf16=choice.strategy.bf16)
    compile_, call, flops = ours(sc.kind, spec["cfg"], batch, choice.strategy)
    t0 = time.perf_counter()
    compile_()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    first_s = time.perf_counter() - t0
    time_calls(call, args.warmup)
    runner, note = (official, None) if isinstance(official, Official) else (None, official)
    our_times: list[float] = []
    off_times: list[float] | None = [] if runner else None
    for _ in range(rounds):
        our_times += time_calls(call, reps)
        if runner and off_times is not None:
            try:
                off_times += runner.time(sc.official, reps)
            except OfficialError as e:  # keep our figures; drop the official ones of this scenario
                runner, off_times, note = None, None, f"official run failed: {e}"
    r = {
        "scenario": name,
        "official_scenario": sc.official,
        "batch": batch,
        "rounds": rounds,
        "reps": reps,
        "ours": _stats(our_times) | {"compile_s": compile_s, "first_call_s": first_s},
        "official": None if off_times is None else _stats(off_times),
        "no_reference": None if note is None else f"{note}; {HOW_TO_ENABLE}",
        "target_ratio": sc.target,
        "analytic_gflop": flops / 1e9,
        "matmul_peak_gflops": peak,
        "matmul_peak_dtype": "bfloat16" if choice.strategy.bf16 else "float32",
        "load_1m": [load0, os.getloadavg()[0]],
        "strategy": choice.strategy.name,
        "strategy_source": choice.source,
        "strategy_seconds": dict(choice.seconds),
        "strategy_failed": dict(choice.failed),
    }
    r["gflops"] = flops / r["ours"]["median_s"] / 1e9
    r["peak_fraction"] = r["gflops"] / peak
    if r["official"] is not None:
        r["ratio"] = r["ours"]["median_s"] / r["official"]["median_s"]
        r["target_met"] = r["ratio"] <= sc.target
    return r


def print_table(results: list[dict]) -> None:
    head = (
        f"{'scenario':<14} {'calls':>5} | {'ours med s':>10} {'p90':>8} {'min':>8} | "
        f"{'official med s':>14} {'p90':>8} {'min':>8} | {'ours/off':>8} {'target':>7} {'met':>4} | "
        f"{'GFLOP/s':>7} {'%peak':>5}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        o, off = r["ours"], r["official"]
        target = f"<={r['target_ratio']:.2f}"
        if off is None:
            theirs, verdict = f"{'-':>14} {'-':>8} {'-':>8}", f"{'-':>8} {target:>7} {'-':>4}"
        else:
            theirs = f"{off['median_s']:>14.3f} {off['p90_s']:>8.3f} {off['min_s']:>8.3f}"
            met = "yes" if r["target_met"] else "no"
            verdict = f"{r['ratio']:>8.2f} {target:>7} {met:>4}"
        print(
            f"{r['scenario']:<14} {r['rounds']}x{r['reps']:<3} | {o['median_s']:>10.3f} "
            f"{o['p90_s']:>8.3f} {o['min_s']:>8.3f} | {theirs} | {verdict} | "
            f"{r['gflops']:>7.1f} {100 * r['peak_fraction']:>4.0f}%"
        )
    print()
    for r in results:
        o = r["ours"]
        print(
            f"{r['scenario']} (batch {r['batch']}, official {r['official_scenario']}): load "
            f"{r['load_1m'][0]:.2f} -> {r['load_1m'][1]:.2f}; our compile {o['compile_s']:.1f} s, "
            f"first call {o['first_call_s']:.2f} s; {r['analytic_gflop']:.1f} GFLOP per call; "
            f"{r['matmul_peak_dtype']} matmul peak {r['matmul_peak_gflops']:.0f} GFLOP/s"
        )
        times = "; ".join(f"{n} {t:.4g} s" for n, t in sorted(r["strategy_seconds"].items()))
        how = {"measured": "timed now", "cache": "from the cache", "set": "set"}
        print(
            f"  strategy {r['strategy']} ({how[r['strategy_source']]})"
            + (f"; candidates per call: {times}" if times else "")
        )
        for name, why in r["strategy_failed"].items():
            print(f"  candidate {name} failed: {why}")
        if r["no_reference"] and r["no_reference"].startswith("official run failed"):
            print(f"  no reference measured ({r['no_reference']})")


def main(args: argparse.Namespace) -> None:
    # make_train_step donates all arguments; the clips buffer is not reusable, which is fine.
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    # nowcastd's strategy lines (what it timed, chose or read from the cache) on stderr
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("nowcastd.strategy", "nowcastd.train.cpu_devices"):
        logging.getLogger(name).setLevel(logging.INFO)
    train = [n for n in args.names if SCENARIOS[n].kind == "train"]
    batches = [CONFIGS[SCENARIOS[n].config]["train_batch"] for n in args.names]
    count = cpu_devices_for_run(
        CONFIGS[SCENARIOS[train[0]].config]["cfg"] if train else CONFIGS["seed"]["cfg"],
        math.gcd(*batches),
        requested=args.cpu_devices,
        measure=args.strategy == "auto" and bool(train),
        reverse_input=False,
        cache=StrategyCache(strategy_cache_dir(os.environ)),
    )
    cpu_devices = split_cpu(count)
    official = (
        "turned off by --no-official"
        if args.no_official
        else find_official(args.torch_python, args.predrnn_repo, args.torch_bench)
    )
    env = {
        "cpu": cpu_model(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "cpu_devices": cpu_devices,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "torch": official.torch_version if isinstance(official, Official) else None,
    }
    if not args.json:
        print(
            f"{env['cpu']}: jax {env['jax']} on {env['device']} (training split over "
            f"{cpu_devices} CPU devices), XLA_FLAGS={env['xla_flags']!r}, torch "
            f"{env['torch'] or '-'}, strategy {getattr(args.strategy, 'name', args.strategy)}"
        )
        if not isinstance(official, Official):
            print(f"no reference measured ({official}; {HOW_TO_ENABLE})")
    results = []
    for name in args.names:
        r = run_scenario(name, args, official)
        results.append(r)
        if args.json:
            print(json.dumps(env | r), flush=True)
    if not args.json:
        print_table(results)


if __name__ == "__main__":
    main(ARGS)
