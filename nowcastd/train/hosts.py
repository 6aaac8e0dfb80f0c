"""Training on several hosts: JAX's distributed runtime, one process per host.

`start` joins the processes (`jax.distributed.initialize`) and must run before anything
touches a JAX backend; the CPU is split into host devices after it. Every process then builds
the same global `data` mesh over all processes' devices (`DataParallel`), draws its own share
of each batch from its own generator (`process_rng`, `local_batch_size`) and passes it as its
local part of the global batch; the training step's all-reduce averages the gradients over
every device of every host. On a CPU, jax's cross-process collectives use gloo (its default).

Process 0 alone writes checkpoints and the metrics log; the data position of every process is
gathered into the checkpoint (`gather_json`), so `--resume` continues each process's draws,
and the processes' parameter digests are compared at every checkpoint (`param_digest`).
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

from nowcastd.errors import NowcastdError

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


def is_main() -> bool:
    """Whether this process writes the run's files (process 0)."""
    return jax.process_index() == 0


def process_rng(seed: int) -> np.random.Generator:
    """This process's data generator: `seed` alone on one host, (seed, process) on several."""
    if jax.process_count() == 1:
        return np.random.default_rng(seed)
    return np.random.default_rng([seed, jax.process_index()])


def per_process_batch(batch_size: int, processes: int) -> int:
    """Each process's share of the global batch; ValueError unless the processes divide it."""
    if batch_size % processes:
        raise ValueError(
            f"batch_size: expected a multiple of the {processes} processes, got {batch_size}"
        )
    return batch_size // processes


def local_batch_size(batch_size: int) -> int:
    """This process's share of the global batch of the running processes."""
    return per_process_batch(batch_size, jax.process_count())


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


def check_same_parameters(network: eqx.Module, step: int) -> list[str]:
    """Every process's parameter digest; HostsDiverged (in every process) if they differ."""
    digests = gather_json(param_digest(network))
    if len(set(digests)) > 1:
        raise HostsDiverged(
            f"iteration {step}: expected the same parameters in every process, got digests "
            + ", ".join(f"process {i}: {d[:12]}" for i, d in enumerate(digests))
        )
    return digests


def local_copy(network: M) -> M:
    """The network on this process's devices alone (to run it without the other processes)."""
    if jax.process_count() == 1:
        return network
    return jax.tree_util.tree_map(
        lambda x: jax.numpy.asarray(np.asarray(x)) if isinstance(x, jax.Array) else x, network
    )


def local_data_state(saved: dict[str, Any]) -> dict[str, Any]:
    """This process's data position from a checkpoint's `data_state` (`checkpoint_data_state`)."""
    count = jax.process_count()
    if saved.get("kind") != "processes":
        if count > 1:
            raise NowcastdError(
                f"cannot resume the data draws: the checkpoint holds one process's, expected "
                f"{count} (one per process)"
            )
        return saved
    states = saved.get("states", [])
    if len(states) != count:
        raise NowcastdError(
            f"cannot resume the data draws: the checkpoint holds {len(states)} processes', "
            f"expected {count}"
        )
    return states[jax.process_index()]


def checkpoint_data_state(local: dict[str, Any]) -> dict[str, Any]:
    """The `data_state` a checkpoint stores: this process's alone on one host, every
    process's (gathered) on several."""
    if jax.process_count() == 1:
        return local
    return {"kind": "processes", "states": gather_json(local)}
