"""Would bfloat16 inference pay on this CPU? The radar gate convolutions in float32 and bfloat16.

    PYTHONPATH=. python bench/bench_conv_bf16.py [--repeats 20]

For the radar configuration's three gate convolutions (batch 1, 32x32 patched grid, 5x5, 128 in;
256, 192 and 64 out) it prints the median and p99 of: XLA's convolution in float32 (what the
model runs), the same convolution in bfloat16, a bfloat16 matmul over the 25 shifted copies
of the input (im2col, float32 accumulation), and the product's `bf16=on` convolution
(model/layers.py: one bfloat16 matmul over the input's 5 row shifts, float32 sums; from float32
operands, as the model calls it); the ratio of each to float32, and each one's largest error relative to the float32 result's largest
value. "inference" is the float32 convolution compiled as the rollout is
(model/rollout.py, INFERENCE_COMPILER_OPTIONS). A 2048^3 matmul in both types shows the peak each type reaches. Figures only.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from timing import warm_ms

from model.layers import conv2d as model_conv2d
from model.rollout import INFERENCE_COMPILER_OPTIONS

DIMS = ("NHWC", "HWIO", "NHWC")


def conv(x, w):
    return lax.conv_general_dilated(
        x, w, (1, 1), ((2, 2), (2, 2)), dimension_numbers=DIMS,
        preferred_element_type=jnp.float32,
    )  # fmt: skip


def shifted_matmul(x, w):
    b, h, wd, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    cols = jnp.concatenate([xp[:, i : i + h, j : j + wd] for i in range(5) for j in range(5)], -1)
    out = jnp.dot(cols.reshape(b * h * wd, -1), w.reshape(-1, w.shape[-1]),
                  preferred_element_type=jnp.float32)  # fmt: skip
    return out.reshape(b, h, wd, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0]}")
    n = 2048
    for dtype in (jnp.float32, jnp.bfloat16):
        a = jnp.ones((n, n), dtype)
        t = warm_ms(jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32)), a, a,
                  repeats=5)  # fmt: skip
        print(f"matmul {n}^3 {jnp.dtype(dtype).name}: {2 * n**3 / np.median(t) / 1e6:.0f} GFLOP/s")
    print(
        f"{'out ch':>6} {'variant':<24} {'median ms':>9} {'p99 ms':>7} {'vs f32':>6} {'rel err':>8}"
    )
    for c_out in (256, 192, 64):
        x = jax.random.normal(jax.random.key(0), (1, 32, 32, 128))
        w = jax.random.normal(jax.random.key(1), (5, 5, 128, c_out)) / np.sqrt(25 * 128)
        want = jax.jit(conv)(x, w)
        xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
        runs = {
            "conv float32": (conv, x, w),
            "conv float32 inference": (conv, x, w),
            "conv bfloat16": (conv, xb, wb),
            "im2col matmul bfloat16": (shifted_matmul, xb, wb),
            "row shifts bf16=on": (lambda x, w: model_conv2d(x, w, bf16=True), x, w),
        }
        base = None
        for name, (fn, *operands) in runs.items():
            options = INFERENCE_COMPILER_OPTIONS if name.endswith("inference") else None
            f = jax.jit(fn, compiler_options=options)
            t = warm_ms(f, *operands, repeats=args.repeats)
            med = float(np.median(t))
            base = base or med
            err = float(jnp.max(jnp.abs(f(*operands) - want)) / jnp.max(jnp.abs(want)))
            print(f"{c_out:>6} {name:<24} {med:>9.2f} {np.percentile(t, 99):>7.2f} "
                  f"{med / base:>6.2f} {err:>8.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
