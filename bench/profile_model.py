"""Where a bench_model scenario's time goes: XLA's per-op profile, grouped by kind of op.

    PYTHONPATH=. python bench/profile_model.py seed_train [--calls 5] [--cpu-devices 0]
        [--strategy auto|default|NAME]

Runs the scenario as bench/bench_model.py does (training split over host devices), under
`jax.profiler.trace`, and sums the executed XLA ops of the trace per kind: convolutions (XLA's
"ynn_fusion", a convolution with its fused neighbours, and plain "convolution"), matmuls,
collectives and waits, copies and transposes, other fusions. It prints milliseconds of thread
time per call and each kind's share, beside the wall time per call, the analytic FLOPs and a
measured matmul peak, so that what is left can be read as a fraction of that peak.

The trace holds the ops that XLA's thunk executor runs; convolutions outside YNN fusions (the
inference programs, model/rollout.py) hand their work to Eigen's thread pool, which the trace
does not time as ops. The "traced ops cover" line says how much of the wall time per call the
listed ops account for. `--strategy` profiles the scenario under a strategy (`model.strategy`):
`auto`, the default, is the one nowcastd picks on this machine (bench_model.py's choice, timed
or cached), `default` or a NAME sets it.
"""

import argparse
import collections
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_model as bm  # noqa: E402

KINDS = (  # (kind, prefixes of XLA op names)
    ("convolution", ("ynn_fusion", "convolution", "conv_general_dilated")),
    ("matmul", ("dot", "dot_general")),
    ("collective / wait", ("all-reduce", "Rendezvous", "Wait", "SlinkyThreadPool::Await")),
    ("copy / transpose / concat", ("copy", "transpose", "concatenate", "bitcast")),
)
NOT_OPS = ("$", "ThunkExecutor", "PjitFunction", "CommonPjRt", "ParseArguments", "end: ", "while")


def kind_of(name: str) -> str | None:
    if name.startswith(NOT_OPS):
        return None
    for kind, prefixes in KINDS:
        if name.startswith(prefixes):
            return kind
    return "other fusions"


def op_times(trace_dir: Path) -> dict[str, float]:
    """Microseconds per op name over the whole trace."""
    (path,) = trace_dir.rglob("perfetto_trace.json.gz")
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    total: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("ph") == "X":
            total[e["name"]] += e["dur"]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(bm.SCENARIOS))
    parser.add_argument("--calls", type=int, default=5, help="profiled calls")
    parser.add_argument("--cpu-devices", type=int, default=0)
    parser.add_argument("--strategy", default="auto", help="auto, default or a strategy name")
    parser.add_argument("--strategy-budget", type=float, default=120.0)
    args = parser.parse_args()
    try:
        setting = bm.parse_setting(args.strategy)
    except ValueError as e:
        parser.error(f"--strategy: {e}, got {args.strategy!r}")
    sc = bm.SCENARIOS[args.scenario]
    spec = bm.CONFIGS[sc.config]
    batch = spec["train_batch" if sc.kind == "train" else "infer_batch"]
    devices = bm.split_cpu(bm.cpu_devices_for(batch, args.cpu_devices))
    choice = bm.chosen(sc.kind, spec["cfg"], batch, setting, args.strategy_budget)
    compile_, call, flops = bm.ours(sc.kind, spec["cfg"], batch, choice.strategy)
    compile_()
    for _ in range(3):
        bm.jax.block_until_ready(call())
    wall = bm.time_calls(call, args.calls)
    peak = bm.matmul_peak(bf16=choice.strategy.bf16)
    with tempfile.TemporaryDirectory() as tmp:
        with bm.jax.profiler.trace(tmp, create_perfetto_trace=True):
            t0 = time.perf_counter()
            for _ in range(args.calls):
                bm.jax.block_until_ready(call())
            traced = (time.perf_counter() - t0) / args.calls
        ops = op_times(Path(tmp))
    kinds: dict[str, float] = collections.defaultdict(float)
    for name, us in ops.items():
        kind = kind_of(name)
        if kind is not None:
            kinds[kind] += us / args.calls / 1e3
    total = sum(kinds.values())
    median = float(bm.np.median(wall))
    print(
        f"{args.scenario}: batch {batch} over {devices} CPU device(s); wall per call {median:.3f} s "
        f"(median of {args.calls}; {traced:.3f} s while traced); {flops / 1e9:.1f} GFLOP "
        f"analytic = {flops / median / 1e9:.0f} GFLOP/s, {100 * flops / median / 1e9 / peak:.0f} % "
        f"of the {peak:.0f} GFLOP/s {'bfloat16' if choice.strategy.bf16 else 'float32'} "
        f"matmul peak; at that peak: {flops / peak / 1e9:.3f} s"
    )
    print(f"strategy {choice.strategy.name} ({choice.source})")
    print(
        f"traced ops cover {total / 1e3:.3f} s of thread time per call, "
        f"{100 * total / 1e3 / traced:.0f} % of the wall time while traced"
    )
    print(f"{'kind of op':<28} {'ms/call':>9} {'share':>6}   (thread time, all threads)")
    for kind, ms in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"{kind:<28} {ms:>9.1f} {100 * ms / total:>5.0f}%")
    top = sorted(ops.items(), key=lambda kv: -kv[1])
    print("largest single ops (ms/call):", end="")
    shown = [(n, us) for n, us in top if kind_of(n) is not None][:6]
    print("; ".join(f" {n} {us / args.calls / 1e3:.1f}" for n, us in shown))


if __name__ == "__main__":
    main()
