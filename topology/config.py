"""The `topology:` section of Tessera's config file, with documented defaults.

```yaml
topology:
  levels:            # node labels, widest domain first; keys no node carries are ignored
  - topology.kubernetes.io/zone
  - cloud.google.com/gce-topology-block
  - cloud.google.com/gce-topology-subblock
  - topology.k8s.aws/network-node-layer-1
  - topology.k8s.aws/network-node-layer-2
  - topology.k8s.aws/network-node-layer-3
  - nvidia.com/gpu.clique          # a multi-node NVLink domain (e.g. one GB200 NVL72 rack)
  - kubernetes.io/hostname
  locality:          # device attributes that make devices in one node close, widest first
  - resource.kubernetes.io/numaNode
  - resource.kubernetes.io/pcieRoot
  torus:
    coordsAttribute: coords                         # list of ints, in the device's driver domain
    shapeLabel: cloud.google.com/gke-tpu-topology   # e.g. 4x4x4
    poolLabel: cloud.google.com/gke-nodepool        # one torus per value
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_LEVELS = (
    "topology.kubernetes.io/zone",
    "cloud.google.com/gce-topology-block",
    "cloud.google.com/gce-topology-subblock",
    "topology.k8s.aws/network-node-layer-1",
    "topology.k8s.aws/network-node-layer-2",
    "topology.k8s.aws/network-node-layer-3",
    "nvidia.com/gpu.clique",
    "kubernetes.io/hostname",
)
HOSTNAME = "kubernetes.io/hostname"
DEFAULT_LOCALITY = ("resource.kubernetes.io/numaNode", "resource.kubernetes.io/pcieRoot")

# PodGroup (and, for slice-shape, ResourceClaim) annotations.
REQUIRED_ANNOTATION = "tessera.dev/topology-required"
PREFERRED_ANNOTATION = "tessera.dev/topology-preferred"
SLICE_SHAPE_ANNOTATION = "tessera.dev/slice-shape"


class ConfigError(ValueError):
    """A config file that does not describe a topology; the message names the field."""


@dataclass(frozen=True, slots=True)
class TorusConfig:
    coords_attribute: str = "coords"
    shape_label: str = "cloud.google.com/gke-tpu-topology"
    pool_label: str = "cloud.google.com/gke-nodepool"


@dataclass(frozen=True, slots=True)
class TopologyConfig:
    levels: tuple[str, ...] = DEFAULT_LEVELS
    locality: tuple[str, ...] = DEFAULT_LOCALITY
    torus: TorusConfig = field(default_factory=TorusConfig)


def _strings(raw: Any, path: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) and x for x in raw):
        raise ConfigError(f"{path}: must be a non-empty list of strings")
    if len(set(raw)) != len(raw):
        raise ConfigError(f"{path}: must not repeat an entry")
    return tuple(raw)


def parse_topology_config(doc: Any, other_sections: tuple[str, ...] = ()) -> TopologyConfig:
    """The `topology` section of a parsed config file (the whole document); absent means defaults.
    `other_sections` are the sections other parts of Tessera read from the same file."""
    if doc is None:
        return TopologyConfig()
    if not isinstance(doc, Mapping):
        raise ConfigError("config: must be a mapping with a topology: section")
    known = ("topology", *other_sections)
    unknown = set(doc) - set(known)
    if unknown:
        raise ConfigError(f"config: unknown section(s) {', '.join(sorted(map(str, unknown)))} (expected {', '.join(known)})")
    raw = doc.get("topology")
    if raw is None:
        return TopologyConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError("topology: must be a mapping")
    unknown = set(raw) - {"levels", "locality", "torus"}
    if unknown:
        raise ConfigError(f"topology: unknown field(s) {', '.join(sorted(map(str, unknown)))} (expected levels, locality, torus)")
    levels = _strings(raw["levels"], "topology.levels") if "levels" in raw else DEFAULT_LEVELS
    locality = _strings(raw["locality"], "topology.locality") if "locality" in raw else DEFAULT_LOCALITY
    torus = TorusConfig()
    if "torus" in raw:
        t = raw["torus"]
        if not isinstance(t, Mapping):
            raise ConfigError("topology.torus: must be a mapping")
        names = {"coordsAttribute": "coords_attribute", "shapeLabel": "shape_label", "poolLabel": "pool_label"}
        unknown = set(t) - set(names)
        if unknown:
            raise ConfigError(f"topology.torus: unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                              f"(expected {', '.join(names)})")
        values = {}
        for key, attr in names.items():
            if key in t:
                v = t[key]
                if not isinstance(v, str) or not v:
                    raise ConfigError(f"topology.torus.{key}: must be a non-empty string")
                values[attr] = v
        torus = TorusConfig(**values)
    return TopologyConfig(levels, locality, torus)
