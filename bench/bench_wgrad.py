"""Time the weight gradient of the fused gate convolutions three ways, on JAX's default device.

    PYTHONPATH=. python bench/bench_wgrad.py [--repeats 20]

For the radar configuration's shapes (32x32 patched grid, 5x5 filters; the 256, 192 and 64
output channels of the [x, h], [x, m] and output-gate convolutions) and the seed
configuration's (10x10), at several batch sizes, it prints the median and p99 of:

- `chunks`: what `model/layers.py` does, convolutions over at most 96 output channels;
- `one`: the same convolution over all output channels at once;
- `xla`: XLA's own transpose of the forward convolution (`jax.vjp` of `lax.conv`).

and each one's ratio to `chunks`. Figures only; nothing is asserted.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from timing import warm_ms

from model import layers

SHAPES = [  # batch, grid, in channels, out channels
    *[(b, 32, 128, c) for b in (1, 2, 4) for c in (256, 192, 64)],
    (4, 32, 80, 256),
    *[(b, 10, 32, c) for b in (8, 16) for c in (64, 48)],
]


def one(x: jax.Array, g: jax.Array) -> jax.Array:
    dw = layers._conv_nhwc(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)), 2)
    return jnp.transpose(dw, (1, 2, 0, 3))


def xla(x: jax.Array, g: jax.Array) -> jax.Array:
    def conv(w):
        dims = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(x, w, (1, 1), ((2, 2), (2, 2)), dimension_numbers=dims)

    return jax.vjp(conv, jnp.zeros((5, 5, x.shape[-1], g.shape[-1])))[1](g)[0]


def chunks(x: jax.Array, g: jax.Array) -> jax.Array:
    return layers._conv_weight_grad(x, g, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0]}; ms per call, median / p99")
    print(f"{'batch grid  in  out':<20} {'chunks':>15} {'one':>15} {'xla':>15} {'one/ch':>7} "
          f"{'xla/ch':>7}")  # fmt: skip
    for b, size, c_in, c_out in SHAPES:
        x = jax.random.normal(jax.random.key(0), (b, size, size, c_in))
        g = jax.random.normal(jax.random.key(1), (b, size, size, c_out))
        fns = {"chunks": chunks, "one": one, "xla": xla}
        t = {name: warm_ms(jax.jit(fn), x, g, repeats=args.repeats) for name, fn in fns.items()}
        med = {name: float(np.median(v)) for name, v in t.items()}
        cells = [f"{med[n]:7.2f} /{np.percentile(t[n], 99):6.2f}" for n in fns]
        print(
            f"{b:>5} {size:>4} {c_in:>3} {c_out:>4}   {' '.join(f'{c:>15}' for c in cells)} "
            f"{med['one'] / med['chunks']:>7.2f} {med['xla'] / med['chunks']:>7.2f}"
        )


if __name__ == "__main__":
    main()
