"""Every distinct program a strategy search could pick: the tests' enumeration of
`model.strategy.axes`, all combinations at once (the search itself varies one axis at a time)."""

import itertools

from model.config import ModelConfig
from model.strategy import DEFAULT, WGRAD_CHUNKS, Strategy, axes


def candidates(
    cfg: ModelConfig,
    batch: int,
    *,
    inference: bool,
    wgrad_chunks: tuple[int, ...] = WGRAD_CHUNKS,
) -> tuple[Strategy, ...]:
    """Every distinct program that combinations of `axes` give for `cfg` at `batch`, one
    strategy each, DEFAULT first."""
    settings = axes(inference=inference, wgrad_chunks=wgrad_chunks)
    names = [name for name, _ in settings]
    combos = [DEFAULT] + [
        Strategy(**dict(zip(names, combo, strict=True)))  # type: ignore[arg-type]
        for combo in itertools.product(*(values for _, values in settings))
    ]
    seen: set[Strategy] = set()
    out = []
    for strategy in combos:
        program = strategy.resolved(cfg, batch, inference=inference)
        if program not in seen:
            seen.add(program)
            out.append(strategy)
    return tuple(out)
