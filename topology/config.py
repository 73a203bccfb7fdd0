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

`TOPOLOGY_SECTION` describes every key (type, default, meaning, an accepted example): the parser
checks unknown keys against it, and `python -m scheduler.config_reference` renders
docs/configuration.md from it.
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


# --- the keys, declared once: for the parser's unknown-key checks and for the reference docs ---

@dataclass(frozen=True, slots=True)
class Key:
    """One key of Tessera's config file, as the parser accepts it and the reference shows it."""

    name: str
    type: str  # as the reference shows it
    meaning: str  # Markdown, one paragraph
    default: Any = None  # the value when the key is absent (None: no default, or see `keys`)
    required: bool = False
    example: Any = None  # a value the parser accepts, unlike the default where it can (leaves only)
    keys: tuple[Key, ...] = ()  # a mapping's keys; with `entries`, the keys of each list entry
    entries: bool = False  # a list of mappings, each with `keys`
    closed: bool = True  # the parser refuses keys not in `keys` (and names the ones it expects)
    refused: tuple[str, ...] = ()  # keys of the mapping that are refused with a message of their own
    attr: str = ""  # the attribute of the parsed config this key sets

    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)


_TORUS = TorusConfig()
TORUS_KEYS = (
    Key("coordsAttribute", "string", "Name of the device attribute with a chip's coordinates in the torus: a list of "
        "ints, looked up in the device's driver domain (`<driver>/<coordsAttribute>`). Devices without it are not "
        "torus chips; chips on a node that is in no torus are ignored.",
        default=_TORUS.coords_attribute, example="position", attr="coords_attribute"),
    Key("shapeLabel", "string", "Node label with the torus's shape, e.g. `4x4x4` (a dimension whose length is a "
        "multiple of 4 wraps around, the others are a mesh). A node whose shape disagrees with its pool's is left out "
        "of the torus, with a warning.",
        default=_TORUS.shape_label, example="example.com/tpu-topology", attr="shape_label"),
    Key("poolLabel", "string", "Node label whose value names a torus: the nodes with the same value (and a shape "
        "label) form one torus.",
        default=_TORUS.pool_label, example="example.com/tpu-pool", attr="pool_label"),
)
TOPOLOGY_KEYS = (
    Key("levels", "list of strings (non-empty, no repeats)",
        "Node label keys that form the topology's levels, widest domain first. A node's place is the path of "
        "(label, value) pairs of the levels it carries, so two racks of the same name in different zones are "
        "different domains; levels no node carries are ignored. A gang goes into the narrowest domain that holds it, "
        "and the PodGroup annotations `tessera.dev/topology-required` and `tessera.dev/topology-preferred` name one of "
        "these labels (a label not listed here is not a level: a gang that requires it is refused). Keep "
        "`kubernetes.io/hostname` last so that one node is a domain. Setting the key replaces the whole list.",
        default=DEFAULT_LEVELS, example=["topology.kubernetes.io/zone", "example.com/rack", HOSTNAME], attr="levels"),
    Key("locality", "list of strings (non-empty, no repeats)",
        "Device attributes, fully qualified (`<domain>/<name>`), that group the devices of one node, widest first. "
        "Best fit takes a claim's devices from as few groups as possible, prefers the groups its other requests use "
        "(a GPU and a NIC on one PCIe root) and fits a request into the smallest group that holds it; constraints "
        "always win, this is only an order. Devices without an attribute are in no group at that level.",
        default=DEFAULT_LOCALITY, example=["example.com/island"], attr="locality"),
    Key("torus", "mapping", "Where TPU-style tori come from: chips that publish coordinates, on nodes labelled with "
        "a shape, one torus per node pool. A gang of chips gets one contiguous box of a torus.",
        keys=TORUS_KEYS, attr="torus"),
)
TOPOLOGY_SECTION = Key(
    "topology", "mapping",
    "The cluster's topology as Tessera reads it from node labels and device attributes. Absent, empty or `null`: "
    "every default.",
    keys=TOPOLOGY_KEYS)


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
    known = (TOPOLOGY_SECTION.name, *other_sections)
    unknown = set(doc) - set(known)
    if unknown:
        raise ConfigError(f"config: unknown section(s) {', '.join(sorted(map(str, unknown)))} (expected {', '.join(known)})")
    raw = doc.get("topology")
    if raw is None:
        return TopologyConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError("topology: must be a mapping")
    unknown = set(raw) - set(TOPOLOGY_SECTION.names())
    if unknown:
        raise ConfigError(f"topology: unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                          f"(expected {', '.join(TOPOLOGY_SECTION.names())})")
    levels = _strings(raw["levels"], "topology.levels") if "levels" in raw else DEFAULT_LEVELS
    locality = _strings(raw["locality"], "topology.locality") if "locality" in raw else DEFAULT_LOCALITY
    torus = TorusConfig()
    if "torus" in raw:
        t = raw["torus"]
        if not isinstance(t, Mapping):
            raise ConfigError("topology.torus: must be a mapping")
        names = {k.name: k.attr for k in TORUS_KEYS}
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
