"""Wall-clock timing shared by the benchmarks."""

import time

import jax
import numpy as np


def time_calls(fn, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls of `fn()`, each waited for until its result is ready."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return times


def warm_ms(fn, *args, repeats: int) -> np.ndarray:
    """Milliseconds of `repeats` calls of `fn(*args)` after one untimed call."""
    jax.block_until_ready(fn(*args))
    return np.asarray(time_calls(lambda: fn(*args), repeats)) * 1e3
