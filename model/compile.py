"""The one program compiler: a program and a `Strategy` in, the compiled callable out.

A strategy has two parts (`model.strategy`). Its trace-time part (the weight-gradient chunk,
the unrolling, bfloat16) is an argument of the program: every program compiled here takes
`strategy` as a keyword, which `compile_program` binds. Its compile-time part
(`Strategy.compiler_options`: XLA's YNN fusions) goes to XLA with the same program. The network
carries neither, so a program never runs under one part of a strategy without the other.
"""

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax

from model.strategy import Strategy

__all__ = ["compile_program"]


def compile_program(
    program: Callable[..., Any],
    strategy: Strategy,
    *,
    inference: bool,
    example_args: tuple[Any, ...] | None = None,
    donate: bool = False,
) -> Callable[..., Any]:
    """`program` (a training step, rollout, encode or forecast taking a `strategy` keyword)
    compiled under `strategy`; `inference`: a program without gradients (`Strategy.ynn_on`).

    With `example_args` (arrays or `jax.ShapeDtypeStruct`s) it is compiled ahead of time for
    exactly those shapes, and a call with any other shape is an error. Without, it compiles at
    its first call (`eqx.filter_jit`: non-array arguments are static), once per function,
    strategy and kind of program; `donate` hands every array argument's buffer to the output
    (a training step; such a program is built once per run and not kept here)."""
    if example_args is not None:
        options: dict[str, str | bool] = dict(strategy.compiler_options(inference=inference))
        traced = jax.jit(functools.partial(program, strategy=strategy))
        return traced.lower(*example_args).compile(options)
    if donate:
        return _jitted(program, strategy, inference=inference, donate=True)
    return _cached(program, strategy, inference=inference)


@functools.cache
def _cached(
    program: Callable[..., Any], strategy: Strategy, *, inference: bool
) -> Callable[..., Any]:
    return _jitted(program, strategy, inference=inference, donate=False)


def _jitted(
    program: Callable[..., Any], strategy: Strategy, *, inference: bool, donate: bool
) -> Callable[..., Any]:
    options = strategy.compiler_options(inference=inference)
    traced = functools.partial(program, strategy=strategy)
    # filter_jit passes jax.jit's keywords on; its typed overloads do not list them
    jitted: Callable[..., Any] = eqx.filter_jit(  # type: ignore[call-overload]
        traced, donate="all" if donate else "none", compiler_options=options
    )
    return jitted
