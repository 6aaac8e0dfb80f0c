"""The spatiotemporal LSTM cell (v1, v2 and the action-conditioned variant)."""

import functools
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from model.layers import WGRAD_CHUNK, conv2d, layer_norm, torch_uniform

_FORGET_BIAS = 1.0


class CellState(NamedTuple):
    h: Float[Array, "batch hr wr hidden"]
    c: Float[Array, "batch hr wr hidden"]


class FusedWeights(NamedTuple):
    """Stacked weights for the no-layer-norm, no-action fast path.

    Gate pre-activations that the official code sums from two convolutions become
    one convolution over the concatenated inputs (exact, no zero blocks):
    `[x, h] -> (i, f, g, o)` and `[x, m] -> (i', f', g')`.
    """

    w_xh: Float[Array, "k k cxh four_hidden"]
    w_xm: Float[Array, "k k cxm three_hidden"]


class STLSTMCell(eqx.Module):
    """One ST-LSTM layer, channels-last. All weights are HWIO.

    Blocks of `w_x` follow the official split order (i, f, g, i', f', g', o); of
    `w_h` (i, f, g, o); of `w_m` (i', f', g').
    """

    w_x: Array
    w_h: Array
    w_m: Array
    w_o: Array
    w_last: Array
    w_a: Array | None
    biases: dict[str, Array] | None
    norms: dict[str, tuple[Array, Array]] | None
    num_hidden: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        num_hidden: int,
        filter_size: int,
        *,
        layer_norm_shape: tuple[int, int] | None,
        action: bool,
        key: jax.Array,
    ) -> None:
        n, k = num_hidden, filter_size
        kx, kh, km, ko, kl, ka, kb = jax.random.split(key, 7)
        self.num_hidden = n
        self.w_x = torch_uniform(kx, (k, k, in_channels, 7 * n), in_channels * k * k)
        self.w_h = torch_uniform(kh, (k, k, n, 4 * n), n * k * k)
        self.w_m = torch_uniform(km, (k, k, n, 3 * n), n * k * k)
        self.w_o = torch_uniform(ko, (k, k, 2 * n, n), 2 * n * k * k)
        self.w_last = torch_uniform(kl, (1, 1, 2 * n, n), 2 * n)
        self.w_a = torch_uniform(ka, (k, k, n, 4 * n), n * k * k) if action else None
        if action:
            fans = {"x": in_channels * k * k, "h": n * k * k, "a": n * k * k, "m": n * k * k}
            fans |= {"o": 2 * n * k * k, "last": 2 * n}
            widths = {"x": 7 * n, "h": 4 * n, "a": 4 * n, "m": 3 * n, "o": n, "last": n}
            bkeys = dict(zip(fans, jax.random.split(kb, len(fans)), strict=True))
            self.biases = {
                name: torch_uniform(bkeys[name], (widths[name],), fans[name]) for name in fans
            }
        else:
            self.biases = None
        if layer_norm_shape is not None:
            hh, ww = layer_norm_shape
            outs = {"x": 7 * n, "h": 4 * n, "m": 3 * n, "o": n} | ({"a": 4 * n} if action else {})
            self.norms = {
                name: (jnp.ones((hh, ww, c), jnp.float32), jnp.zeros((hh, ww, c), jnp.float32))
                for name, c in outs.items()
            }
        else:
            self.norms = None

    @property
    def fusable(self) -> bool:
        return self.norms is None and self.w_a is None and self.biases is None

    def fused(self) -> FusedWeights:
        n = self.num_hidden
        wx = self.w_x
        w_xh = jnp.concatenate(
            [jnp.concatenate([wx[..., : 3 * n], wx[..., 6 * n :]], axis=-1), self.w_h], axis=2
        )
        w_xm = jnp.concatenate([wx[..., 3 * n : 6 * n], self.w_m], axis=2)
        return FusedWeights(w_xh, w_xm)

    def _conv(
        self,
        name: str,
        x: Float[Array, "batch hr wr cin"],
        w: Float[Array, "k k cin cout"],
        conv: Callable[[Array, Array], Array],
    ) -> Float[Array, "batch hr wr cout"]:
        y = conv(x, w)
        if self.biases is not None:
            y = y + self.biases[name]
        if self.norms is not None:
            y = layer_norm(y, *self.norms[name])
        return y

    def __call__(
        self,
        x: Float[Array, "batch hr wr cx"],
        state: CellState,
        m: Float[Array, "batch hr wr hidden"],
        action: Float[Array, "batch hr wr hidden"] | None = None,
        fused: FusedWeights | None = None,
        *,
        wgrad_chunk: int = WGRAD_CHUNK,
        bf16: bool = False,
    ) -> tuple[
        CellState,
        Float[Array, "batch hr wr hidden"],
        Float[Array, "batch hr wr hidden"],
        Float[Array, "batch hr wr hidden"],
    ]:
        """Returns the new (h, c), the new memory m and the increments (delta_c, delta_m).

        `wgrad_chunk`: how the convolutions split their weight gradients; `bf16`: whether the
        k x k ones multiply in bfloat16 (`model.layers.conv2d`)."""
        n = self.num_hidden
        conv = functools.partial(conv2d, wgrad_chunk=wgrad_chunk, bf16=bf16)
        if fused is not None:
            xh = conv(jnp.concatenate([x, state.h], axis=-1), fused.w_xh)
            xm = conv(jnp.concatenate([x, m], axis=-1), fused.w_xm)
            i, f, g, o_xh = (xh[..., j * n : (j + 1) * n] for j in range(4))
            ip, fp, gp = (xm[..., j * n : (j + 1) * n] for j in range(3))
        else:
            xc = self._conv("x", x, self.w_x, conv)
            hc = self._conv("h", state.h, self.w_h, conv)
            if self.w_a is not None:
                if action is None:
                    raise ValueError("an action-conditioned cell needs the encoded action")
                hc = hc * self._conv("a", action, self.w_a, conv)
            mc = self._conv("m", m, self.w_m, conv)
            xs = [xc[..., j * n : (j + 1) * n] for j in range(7)]
            hs = [hc[..., j * n : (j + 1) * n] for j in range(4)]
            ms = [mc[..., j * n : (j + 1) * n] for j in range(3)]
            i, f, g = xs[0] + hs[0], xs[1] + hs[1], xs[2] + hs[2]
            ip, fp, gp = xs[3] + ms[0], xs[4] + ms[1], xs[5] + ms[2]
            o_xh = xs[6] + hs[3]
        delta_c = jax.nn.sigmoid(i) * jnp.tanh(g)
        c_new = jax.nn.sigmoid(f + _FORGET_BIAS) * state.c + delta_c
        delta_m = jax.nn.sigmoid(ip) * jnp.tanh(gp)
        m_new = jax.nn.sigmoid(fp + _FORGET_BIAS) * m + delta_m
        mem = jnp.concatenate([c_new, m_new], axis=-1)
        o = jax.nn.sigmoid(o_xh + self._conv("o", mem, self.w_o, conv))
        last = conv2d(mem, self.w_last)
        if self.biases is not None:
            last = last + self.biases["last"]
        h_new = o * jnp.tanh(last)
        return CellState(h_new, c_new), m_new, delta_c, delta_m
