"""Data parallelism: the batch sharded over every local device, parameters replicated."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

_Tree = TypeVar("_Tree")


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """A 1-D `data` mesh over all devices (of every process, after `jax.distributed`)."""

    mesh: Mesh

    @classmethod
    def create(cls) -> DataParallel:
        devices = np.asarray(jax.devices())
        if len(devices) > 1:
            logger.info("data parallel over %d devices", len(devices))
        return cls(Mesh(devices, ("data",)))

    @property
    def size(self) -> int:
        return self.mesh.devices.size

    def replicate(self, tree: _Tree) -> _Tree:
        """Every array of `tree` on every device. With several processes each passes the same
        host values (a device array of one process cannot be put on another's devices)."""
        # jax leaves PartitionSpec's constructor unannotated
        sharding = NamedSharding(self.mesh, PartitionSpec())  # type: ignore[no-untyped-call]
        local = jax.process_count() == 1

        def put(x: object) -> object:
            if not isinstance(x, jax.Array | np.ndarray):
                return x
            return jax.device_put(x if local else np.asarray(x), sharding)

        replicated: _Tree = jax.tree_util.tree_map(put, tree)
        return replicated

    def shard(self, batch: np.ndarray) -> jax.Array:
        """Split the batch axis over the mesh (each process passes its own local part)."""
        # jax leaves PartitionSpec's constructor unannotated
        sharding = NamedSharding(self.mesh, PartitionSpec("data"))  # type: ignore[no-untyped-call]
        local = len(self.mesh.local_devices)
        if batch.shape[0] % local:
            raise ValueError(
                f"batch size {batch.shape[0]} is not divisible by the {local} local devices"
            )
        sharded: jax.Array
        if jax.process_count() > 1:
            # jax leaves make_array_from_process_local_data unannotated
            sharded = jax.make_array_from_process_local_data(  # type: ignore[no-untyped-call]
                sharding, batch
            )
        else:
            sharded = jax.device_put(batch, sharding)
        return sharded


def cpu_devices_for(batch_size: int, requested: int = 0) -> int:
    """How many host devices to split a CPU into for training: `requested`, or with 0 the
    largest count up to the usable cores that divides the batch (1: no split)."""
    if requested < 0:
        raise ValueError(f"cpu_devices must be >= 0, got {requested}")
    if requested:
        if batch_size % requested:
            raise ValueError(
                f"cpu_devices: {requested} devices cannot split a batch of {batch_size}; "
                "expected a divisor of batch_size, or 0 for automatic"
            )
        return requested
    cores = len(os.sched_getaffinity(0))
    return max(n for n in range(1, cores + 1) if batch_size % n == 0)


def cpu_devices_forced() -> bool:
    """Whether XLA_FLAGS already sets the count of CPU devices (it then stays as it is)."""
    return "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")


def split_cpu(count: int) -> int:
    """Make the CPU `count` devices, one batch shard each, before JAX starts its backends.

    Training on a CPU runs as data parallelism over host devices: each core then steps
    through its own shard of the batch, instead of both cores sharing every small
    convolution (the seed configuration's training step: 1.3x faster on 2 cores,
    bench/bench_model.py). An accelerator's devices are unaffected. Returns the number of
    CPU devices in effect: once JAX has run, or when XLA_FLAGS already sets a count, those
    stay as they are.
    """
    if cpu_devices_forced():
        return len(jax.devices("cpu"))
    try:
        # jax leaves Config.update unannotated
        jax.config.update("jax_num_cpu_devices", count)  # type: ignore[no-untyped-call]
    except RuntimeError:  # backends already started (e.g. a second command in one process)
        logger.debug("JAX already running; keeping its %d CPU devices", len(jax.devices("cpu")))
    return len(jax.devices("cpu"))
