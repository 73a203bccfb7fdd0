"""Topology of a cluster for placement: node levels (zones, blocks, NVLink cliques, hosts),
device locality within nodes (NUMA, PCIe roots), and TPU tori. Pure: no I/O, no Kubernetes
objects; the allocator builds it from Nodes and ResourceSlices.
"""

from .config import TopologyConfig, parse_topology_config
from .hierarchy import Domain, Hierarchy
from .model import Topology
from .torus import Box, FreeGrid, Torus, compact_shapes, parse_shape

__all__ = ["Box", "Domain", "FreeGrid", "Hierarchy", "Topology", "TopologyConfig", "Torus", "compact_shapes",
           "parse_shape", "parse_topology_config"]
