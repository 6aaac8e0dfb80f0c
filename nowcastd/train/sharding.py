"""Data parallelism: the batch sharded over every local device, parameters replicated."""

from __future__ import annotations

import dataclasses
import logging

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)


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

    def replicate(self, tree):
        sharding = NamedSharding(self.mesh, PartitionSpec())
        return jax.tree_util.tree_map(
            lambda x: jax.device_put(x, sharding) if isinstance(x, jax.Array | np.ndarray) else x,
            tree,
        )

    def shard(self, batch: np.ndarray) -> jax.Array:
        """Split the batch axis over the mesh (each process passes its own local part)."""
        sharding = NamedSharding(self.mesh, PartitionSpec("data"))
        if jax.process_count() > 1:
            return jax.make_array_from_process_local_data(sharding, batch)
        if batch.shape[0] % self.size:
            raise ValueError(
                f"batch size {batch.shape[0]} is not divisible by the {self.size} devices"
            )
        return jax.device_put(batch, sharding)
