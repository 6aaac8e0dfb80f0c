"""The CPU device counts of a training run as one more search (`search.search`).

A count is fixed when JAX starts its backend, so the caller times each in a child process;
what is searched here is the counts themselves: the divisors of the batch up to the usable
cores, the automatic count (the largest) first, then half of it, then no split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

from model.config import ModelConfig
from nowcastd.strategy.search import Axis, cache_key


def device_counts(batch: int, cores: int) -> tuple[int, ...]:
    """The largest count up to `cores` that divides `batch`, half of it when that divides the
    batch, and 1: at most three, the largest first."""
    largest = max(n for n in range(1, cores + 1) if batch % n == 0)
    half = largest // 2
    out = [largest]
    if half > 1 and batch % half == 0:
        out.append(half)
    if largest > 1:
        out.append(1)
    return tuple(out)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeviceCounts:
    """The host devices to split `cores` usable cores into, to train `model` on `batch` clips
    per process: a `search.Space` of one axis, the counts (`device_counts`)."""

    model: ModelConfig
    batch: int
    reverse_input: bool
    cores: int

    name = "training step CPU devices"

    @property
    def counts(self) -> tuple[int, ...]:
        return device_counts(self.batch, self.cores)

    @property
    def label(self) -> str:
        return (
            f"{self.name} ({self.batch} clips per process, reverse_input {int(self.reverse_input)})"
        )

    @property
    def default(self) -> int:
        return self.counts[0]

    def axes(self) -> tuple[Axis, ...]:
        return (("devices", self.counts),)

    def vary(self, base: int, axis: str, value: Any) -> int:
        del base, axis
        return int(value)

    def program_of(self, candidate: int) -> Hashable:
        return candidate

    def name_of(self, candidate: int) -> str:
        return str(candidate)

    def parse(self, name: str) -> int:
        if not name.isdigit() or int(name) not in self.counts:
            raise ValueError(f"expected one of the counts {self.counts}, got {name!r}")
        return int(name)

    def key(self) -> dict[str, Any]:
        """The cache key (`search.cache_key`), with the cores; nothing that starts JAX."""
        return cache_key(
            self,
            cores=self.cores,
            model=repr(self.model),
            batch=self.batch,
            reverse_input=self.reverse_input,
        )
