"""Training on several hosts: JAX's distributed runtime, one process per host.

`start` joins the processes (`jax.distributed.initialize`) and must run before anything
touches a JAX backend; the CPU is split into host devices after it. Every process then builds
the same global `data` mesh over all processes' devices (`DataParallel`), draws its own share
of each batch from its own generator (`Processes.rng`, `Processes.local_batch_size`) and
passes it as its local part of the global batch; the training step's all-reduce averages the
gradients over every device of every host. On a CPU, jax's cross-process collectives use gloo
(its default).

Process 0 alone writes checkpoints and the metrics log; the data position of every process is
gathered into the checkpoint (`gather_json`, `EveryProcess`), so `--resume` continues each
process's draws, and the processes' parameter digests are compared at every checkpoint
(`param_digest`). `Processes` holds everything a run does differently on several hosts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Any, TypeVar

import equinox as eqx
import jax
import numpy as np

from model.strategy import DEFAULT
from nowcastd.errors import NowcastdError
from nowcastd.strategy.search import StrategySetting

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=eqx.Module)


class HostsDiverged(NowcastdError):
    """The processes of a multi-host run hold different parameters."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hosts:
    """Where this process sits in a multi-host run: the coordinator (process 0's host:port),
    the number of processes and this one's index."""

    coordinator_address: str
    num_processes: int
    process_id: int

    def __post_init__(self) -> None:
        host, _, port = self.coordinator_address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(
                f"coordinator_address: expected host:port, got {self.coordinator_address!r}"
            )
        if self.num_processes < 1:
            raise ValueError(f"num_processes: expected an integer >= 1, got {self.num_processes}")
        if not 0 <= self.process_id < self.num_processes:
            raise ValueError(
                f"process_id: expected 0..{self.num_processes - 1} (num_processes "
                f"{self.num_processes}), got {self.process_id}"
            )


def start(hosts: Hosts) -> None:
    """Join the run's processes; before any JAX backend starts (it blocks until all joined)."""
    jax.distributed.initialize(hosts.coordinator_address, hosts.num_processes, hosts.process_id)
    logger.info(
        "process %d of %d (coordinator %s)",
        hosts.process_id,
        hosts.num_processes,
        hosts.coordinator_address,
    )


def per_process_batch(batch_size: int, processes: int) -> int:
    """Each process's share of the global batch; ValueError unless the processes divide it."""
    if batch_size % processes:
        raise ValueError(
            f"batch_size: expected a multiple of the {processes} processes, got {batch_size}"
        )
    return batch_size // processes


#: One process's data position, as its batch iterator saves it (`state_dict`).
LocalDataState = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class OneProcess:
    """The data position a one-process run's checkpoint holds: its iterator's, as it is."""

    state: LocalDataState


@dataclasses.dataclass(frozen=True)
class EveryProcess:
    """The data positions a multi-host run's checkpoint holds: every process's, in order."""

    states: tuple[LocalDataState, ...]


#: A checkpoint's `data_state`.
DataState = OneProcess | EveryProcess

_EVERY_PROCESS = "processes"  # the tag of `EveryProcess` in a checkpoint's JSON


def data_state_from_json(doc: dict[str, Any]) -> DataState:
    """A checkpoint's `data_state` as it was saved (`data_state_to_json`)."""
    if doc.get("kind") == _EVERY_PROCESS:
        return EveryProcess(tuple(doc.get("states", [])))
    return OneProcess(doc)


def data_state_to_json(saved: DataState) -> dict[str, Any]:
    """What a checkpoint stores: one process's position as it is, several tagged."""
    if isinstance(saved, OneProcess):
        return saved.state
    return {"kind": _EVERY_PROCESS, "states": list(saved.states)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Processes:
    """This process among the run's `count` processes (one per host): what a run does
    differently on several hosts. Process 0 is the `main` one, which writes the run's files."""

    count: int
    index: int

    @classmethod
    def current(cls) -> Processes:
        """The running processes (after `start`, if the run has several)."""
        return cls(count=jax.process_count(), index=jax.process_index())

    @property
    def main(self) -> bool:
        return self.index == 0

    @property
    def several(self) -> bool:
        return self.count > 1

    def rng(self, seed: int) -> np.random.Generator:
        """This process's data generator: `seed` alone on one host, (seed, process) on several."""
        if not self.several:
            return np.random.default_rng(seed)
        return np.random.default_rng([seed, self.index])

    def local_batch_size(self, batch_size: int) -> int:
        """This process's share of the global batch."""
        return per_process_batch(batch_size, self.count)

    def step_strategy(self, setting: StrategySetting) -> StrategySetting:
        """The training step's strategy setting: on several hosts, whose searches would have to
        agree step by step, "auto" is the default."""
        if setting == "auto" and self.several:
            logger.info("several processes: the training step runs the default strategy")
            return DEFAULT
        return setting

    def local_data_state(self, saved: DataState) -> LocalDataState:
        """This process's data position from a checkpoint's."""
        if isinstance(saved, OneProcess):
            if self.several:
                raise NowcastdError(
                    f"cannot resume the data draws: the checkpoint holds one process's, "
                    f"expected {self.count} (one per process)"
                )
            return saved.state
        if len(saved.states) != self.count:
            raise NowcastdError(
                f"cannot resume the data draws: the checkpoint holds {len(saved.states)} "
                f"processes', expected {self.count}"
            )
        return saved.states[self.index]

    def checkpoint_data_state(self, local: LocalDataState) -> DataState:
        """The data position a checkpoint stores: this process's alone on one host, every
        process's (gathered; every process must call it) on several."""
        if not self.several:
            return OneProcess(local)
        return EveryProcess(tuple(gather_json(local)))

    def check_parameters(self, network: eqx.Module, step: int) -> list[str] | None:
        """On several hosts, every process's parameter digest (every process must call it);
        HostsDiverged if they differ. None on one host."""
        if not self.several:
            return None
        digests = gather_json(param_digest(network))
        if len(set(digests)) > 1:
            raise HostsDiverged(
                f"iteration {step}: expected the same parameters in every process, got digests "
                + ", ".join(f"process {i}: {d[:12]}" for i, d in enumerate(digests))
            )
        return digests

    def local_copy(self, network: M) -> M:
        """The network on this process's devices alone (to run it without the others)."""
        if not self.several:
            return network
        local: M = jax.tree_util.tree_map(
            lambda x: jax.numpy.asarray(np.asarray(x)) if isinstance(x, jax.Array) else x,
            network,
        )
        return local


def gather_json(value: Any) -> list[Any]:
    """Every process's JSON-able `value`, in process order (all processes must call it)."""
    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int64)))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded))
    return [json.loads(row[: int(n)].tobytes()) for row, n in zip(rows, sizes.ravel(), strict=True)]


def param_digest(network: eqx.Module) -> str:
    """SHA-256 of this process's copy of the network's array leaves."""
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(eqx.filter(network, eqx.is_array)):
        digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return digest.hexdigest()
