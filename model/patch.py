"""Space-to-depth patching with the official channel order `(dy * p + dx) * C + c`."""

import jax.numpy as jnp
from jaxtyping import Array, Float


def reshape_patch(
    frames: Float[Array, "*lead height width channels"], patch_size: int
) -> Float[Array, "*lead hp wp cp"]:
    """(..., H, W, C) -> (..., H/p, W/p, p*p*C)."""
    if patch_size == 1:
        return frames
    *lead, h, w, c = frames.shape
    p = patch_size
    x = frames.reshape(*lead, h // p, p, w // p, p, c)
    n = len(lead)
    x = jnp.moveaxis(x, n + 2, n + 1)  # (..., H/p, W/p, p(dy), p(dx), C)
    return x.reshape(*lead, h // p, w // p, p * p * c)


def reshape_patch_back(
    patches: Float[Array, "*lead hp wp cp"], patch_size: int
) -> Float[Array, "*lead height width channels"]:
    """The exact inverse of `reshape_patch`."""
    if patch_size == 1:
        return patches
    *lead, hp, wp, pc = patches.shape
    p = patch_size
    c = pc // (p * p)
    x = patches.reshape(*lead, hp, wp, p, p, c)
    n = len(lead)
    x = jnp.moveaxis(x, n + 2, n + 1)  # (..., H/p, p(dy), W/p, p(dx), C)
    return x.reshape(*lead, hp * p, wp * p, c)
