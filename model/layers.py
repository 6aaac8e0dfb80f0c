"""Channels-last convolution and layer-norm primitives shared by the cells and the network."""

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

_DIMS = ("NHWC", "HWIO", "NHWC")
# Output channels per weight-gradient convolution by default (see _conv_weight_grad).
WGRAD_CHUNK = 96


def conv2d(
    x: Float[Array, "batch rows cols cin"],
    w: Float[Array, "k k cin cout"],
    *,
    stride: int = 1,
    wgrad_chunk: int = WGRAD_CHUNK,
    bf16: bool = False,
) -> Float[Array, "batch out_rows out_cols cout"]:
    """A torch-style `Conv2d(padding=k // 2)` (cross-correlation), NHWC/HWIO.

    `wgrad_chunk`: output channels per convolution of a stride-1 weight gradient (0: all).
    `bf16`: a stride-1 k x k convolution (k > 1) multiplies in bfloat16 (`_conv_same_bf16`)."""
    k = w.shape[0]
    if k == 1 and stride == 1:
        return jnp.einsum("bhwi,io->bhwo", x, w[0, 0])
    if stride == 1 and bf16:
        return _conv_same_bf16(x, w)
    if stride == 1:
        return _conv_same(x, w, wgrad_chunk)
    pad = k // 2
    return lax.conv_general_dilated(
        x, w, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=_DIMS
    )


def _conv_nhwc(x: Array, w: Array, pad: int) -> Array:
    return lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_same(x: Array, w: Array, wgrad_chunk: int) -> Array:
    """Stride-1 SAME convolution whose gradients are also plain NHWC/HWIO convolutions.

    XLA's own transposes of a convolution (kernel `01oi`, and the weight gradient
    with the batch as the contraction, `f01b_i01o`) run inside a `lax.scan` body on a
    slow generic CPU path: the backward pass of the time scan was 30-50x slower than
    unrolled. Here both are expressed as canonical convolutions, with explicit (cheap)
    transposes around them, so they take the fast path inside loops too. `wgrad_chunk` is
    static: how the weight gradient is split (`_conv_weight_grad`).
    """
    del wgrad_chunk
    return _conv_nhwc(x, w, w.shape[0] // 2)


def _conv_same_fwd(x: Array, w: Array, wgrad_chunk: int) -> tuple[Array, tuple[Array, Array]]:
    del wgrad_chunk
    return _conv_nhwc(x, w, w.shape[0] // 2), (x, w)


def _conv_same_bwd(wgrad_chunk: int, res: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    x, w = res
    pad = w.shape[0] // 2
    # d/dx: correlate the cotangent with the flipped kernel, in and out swapped.
    dx = _conv_nhwc(g, jnp.swapaxes(w[::-1, ::-1], 2, 3), pad)
    return dx, _conv_weight_grad(x, g, w.shape[0], wgrad_chunk)


def _conv_weight_grad(x: Array, g: Array, k: int, chunk: int = WGRAD_CHUNK) -> Array:
    """d/dw[dy, dx, i, o] = sum_{b, y, x} x_pad[b, y + dy, x + dx, i] * g[b, y, x, o].

    A convolution with the input channels as its batch and the batch as its channels,
    over at most `chunk` output channels at a time (0: all of them in one): on one CPU, one
    convolution over all of a fused gate's 256 outputs took 2-4x as long as chunks of 96 at
    batch 2-4 (bench/bench_wgrad.py prints both, and XLA's own transpose); so, at batch 4, did
    k matmuls over the input's kernel-row shifts (42, 37, 29 ms against 21, 19, 10 ms for the
    256, 192 and 64 outputs). Other CPUs may prefer another size (`model.strategy`).
    """
    pad = k // 2
    xt = jnp.transpose(x, (3, 1, 2, 0))
    step = chunk or g.shape[-1]
    chunks = [
        _conv_nhwc(xt, jnp.transpose(g[..., s : s + step], (1, 2, 0, 3)), pad)
        for s in range(0, g.shape[-1], step)
    ]
    return jnp.transpose(jnp.concatenate(chunks, axis=-1), (1, 2, 0, 3))


_conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


def _row_shifts(x: Array, k: int) -> Array:
    """The k row shifts of the zero-padded (SAME) `x`, side by side as channels ordered
    (row shift, channel): (batch, rows, cols + k - 1, k * c). (Stacked, then reshaped: XLA's
    CPU concatenation along channels took 1.5-3x as long.)"""
    pad = k // 2
    rows = x.shape[1]
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    shifts = jnp.stack([xp[:, i : i + rows] for i in range(k)], axis=3)
    return shifts.reshape(*shifts.shape[:3], -1)


def _wide(w: Array) -> Array:
    """An HWIO kernel as the matrix (row, cin) x (col, cout) of `_matmul_bf16`, in bfloat16."""
    k, _, cin, cout = w.shape
    return jnp.transpose(w.astype(jnp.bfloat16), (0, 2, 1, 3)).reshape(k * cin, k * cout)


def _matmul_bf16(x: Array, w: Array, loop: bool = False) -> Array:
    """SAME k x k convolution of `x` by HWIO `w` as one bfloat16 matmul, summed in float32.

    Each padded pixel's column of k rows (`_row_shifts`, k * cin values) times the kernel laid
    out as (row, cin) x (col, cout) (`_wide`) gives, for every column offset j, what that pixel
    adds to the output j columns to its left; the output is the sum of the k offsets' shifted
    slices. The matmul does (cols + k - 1) / cols of a convolution's multiplications (1.125x at
    32 columns, k = 5), and its operand is k copies of the input, not the k * k of im2col.

    `loop`: sum the offsets in a loop, whose result XLA cannot fuse into its consumers. In a
    training step's backward pass each input gradient feeds several fusions, and XLA copied
    the sum of slices into every one of them (radar training step: 10.3 s against 10.8 s)."""
    k, cout = w.shape[0], w.shape[-1]
    cols = x.shape[2]
    parts = jnp.einsum(
        "bhwi,io->bhwo",
        _row_shifts(x.astype(jnp.bfloat16), k),
        _wide(w),
        preferred_element_type=jnp.float32,
    ).reshape(*x.shape[:2], cols + k - 1, k, cout)
    if not loop:
        out = parts[:, :, 0:cols, 0]
        for j in range(1, k):
            out = out + parts[:, :, j : j + cols, j]
        return out

    def add_offset(j: Array, out: Array) -> Array:
        part = lax.dynamic_slice_in_dim(parts, j, cols, axis=2)
        summed: Array = out + lax.dynamic_index_in_dim(part, j, axis=3, keepdims=False)
        return summed

    zeros = jnp.zeros((*x.shape[:2], cols, cout), jnp.float32)
    total: Array = lax.fori_loop(0, k, add_offset, zeros)
    return total


@jax.custom_vjp
def _conv_same_bf16(x: Array, w: Array) -> Array:
    """Stride-1 SAME convolution with bfloat16 operands and float32 sums (results in float32).

    XLA's CPU convolution gains nothing from bfloat16, but its matmul reaches the CPU's
    bfloat16 units (AVX-512 BF16, AMX): on one such CPU, 1.9x the float32 rate. So the
    convolution is a matmul (`_matmul_bf16`), and so are both gradients, from one operand: the
    cotangent placed at each of the k column offsets of the forward's partial products. Times
    the kernel's transpose, it gives the gradient of the input's row shifts (summed back into
    rows); contracted with those row shifts over every pixel, the kernel's gradient. The
    residuals are the bfloat16 input and kernel. Values change by the bfloat16 rounding of the
    operands (about 3 significant digits).
    """
    return _matmul_bf16(x, w)


def _conv_same_bf16_fwd(x: Array, w: Array) -> tuple[Array, tuple[Array, Array]]:
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    return _matmul_bf16(xb, wb), (xb, wb)


def _conv_same_bf16_bwd(res: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    x, w = res
    k, _, cin, cout = w.shape
    rows, pad = x.shape[1], k // 2
    gb = g.astype(jnp.bfloat16)
    dx = _matmul_bf16(gb, jnp.swapaxes(w[::-1, ::-1], 2, 3), loop=True)
    # The kernel's gradient: the input's row shifts, contracted over every padded pixel with
    # the gradient of the forward's partial products (column offset j of pixel x' received
    # g[x' - j]). The shifts are built from the transposed input, channels first, so the
    # matmul reads both operands as they lie (transposing the shifts cost k times as much).
    xt = jnp.pad(jnp.transpose(x, (3, 0, 1, 2)), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    shifts_t = jnp.stack([xt[:, :, i : i + rows] for i in range(k)], axis=0)
    offsets = jnp.stack(
        [jnp.pad(gb, ((0, 0), (0, 0), (j, k - 1 - j), (0, 0))) for j in range(k)], axis=3
    )
    dw = jnp.dot(
        shifts_t.reshape(k * cin, -1),
        offsets.reshape(-1, k * cout),
        preferred_element_type=jnp.float32,
    )
    return dx, jnp.transpose(dw.reshape(k, cin, k, cout), (0, 2, 1, 3))


_conv_same_bf16.defvjp(_conv_same_bf16_fwd, _conv_same_bf16_bwd)


def conv_transpose2d(
    x: Float[Array, "batch rows cols cin"],
    w: Float[Array, "k k cin cout"],
    *,
    stride: int,
    output_size: tuple[int, int],
) -> Float[Array, "batch out_rows out_cols cout"]:
    """A torch `ConvTranspose2d(padding=k // 2)` called with `output_size`.

    `w` is the torch (in, out, kh, kw) weight moved to (kh, kw, in, out). The
    transposed convolution is a stride-1 convolution of the dilated input with the
    spatially flipped kernel; `output_size` fixes torch's `output_padding`.
    """
    k = w.shape[0]
    pad = k // 2
    pads = []
    for axis, out in zip((1, 2), output_size, strict=True):
        natural = (x.shape[axis] - 1) * stride - 2 * pad + k
        extra = out - natural
        if not 0 <= extra < stride:
            raise ValueError(
                f"conv_transpose2d: output size {out} unreachable from input {x.shape[axis]}"
            )
        pads.append((k - 1 - pad, k - 1 - pad + extra))
    return lax.conv_general_dilated(
        x,
        w[::-1, ::-1],
        (1, 1),
        tuple(pads),
        lhs_dilation=(stride, stride),
        dimension_numbers=_DIMS,
    )


def layer_norm(
    x: Float[Array, "batch rows cols c"],
    weight: Float[Array, "rows cols c"],
    bias: Float[Array, "rows cols c"],
) -> Float[Array, "batch rows cols c"]:
    """torch `LayerNorm([C, H, W])`: per-sample statistics over (H, W, C), eps 1e-5."""
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2, 3), keepdims=True)
    return (x - mean) * lax.rsqrt(var + 1e-5) * weight + bias


def torch_uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> Array:
    """torch's default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)
