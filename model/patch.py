"""Space-to-depth patching with the official channel order `(dy * p + dx) * C + c`."""

import jax.numpy as jnp
from jaxtyping import Array, Float


def reshape_patch(
    frames: Float[Array, "*lead height width channels"], patch_size: int
) -> Float[Array, "*lead hp wp cp"]:
    """(..., H, W, C) -> (..., H/p, W/p, p*p*C)."""
    return _regroup(frames, patch_size, to_patches=True)


def reshape_patch_back(
    patches: Float[Array, "*lead hp wp cp"], patch_size: int
) -> Float[Array, "*lead height width channels"]:
    """The exact inverse of `reshape_patch`."""
    return _regroup(patches, patch_size, to_patches=False)


def _regroup(x: Array, p: int, *, to_patches: bool) -> Array:
    """Both directions are one swap of the row-offset and column-block axes:
    (..., H/p, p(dy), W/p, p(dx), C) <-> (..., H/p, W/p, p(dy), p(dx), C)."""
    if p == 1:
        return x
    *lead, rows, cols, c = x.shape
    if to_patches:
        split, merged = (rows // p, p, cols // p, p, c), (rows // p, cols // p, p * p * c)
    else:
        c //= p * p
        split, merged = (rows, cols, p, p, c), (rows * p, cols * p, c)
    n = len(lead)
    return jnp.swapaxes(x.reshape(*lead, *split), n + 1, n + 2).reshape(*lead, *merged)
