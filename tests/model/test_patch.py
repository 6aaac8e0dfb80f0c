import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from model.patch import reshape_patch, reshape_patch_back


@settings(max_examples=10, deadline=None)
@given(
    p=st.sampled_from([1, 2, 4]), hp=st.integers(1, 4), wp=st.integers(1, 4), c=st.integers(1, 3)
)
def test_patching_round_trips(p, hp, wp, c) -> None:
    x = np.random.default_rng(0).random((2, 3, hp * p, wp * p, c), dtype=np.float32)
    y = reshape_patch(jnp.asarray(x), p)
    assert y.shape == (2, 3, hp, wp, p * p * c)
    np.testing.assert_array_equal(reshape_patch_back(y, p), x)


def test_patch_channel_order_is_dy_dx_c() -> None:
    p, c = 2, 3
    x = np.arange(1 * 4 * 4 * c, dtype=np.float32).reshape(1, 4, 4, c)
    y = np.asarray(reshape_patch(jnp.asarray(x), p))
    for dy in range(p):
        for dx in range(p):
            for ch in range(c):
                assert y[0, 1, 0, (dy * p + dx) * c + ch] == x[0, 2 + dy, dx, ch]
