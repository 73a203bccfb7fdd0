"""Reading Kubernetes objects from YAML files for `tessera simulate`.

Unparsable YAML, a document that is not an object, or an unknown kind is an input error (exit
2) that names the file and the document index. An object that parses but fails validation is
kept with its error, so only what depends on it suffers.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from allocator.errors import SpecError
from allocator.podspec import SpreadConstraint, parse_default_spread
from topology import TopologyConfig, parse_topology_config
from topology.config import ConfigError

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

KNOWN_KINDS = {
    "Node": ("v1",),
    "Namespace": ("v1",),
    "Pod": ("v1",),
    "DeviceClass": ("resource.k8s.io/v1", "resource.k8s.io/v1beta2"),
    "ResourceSlice": ("resource.k8s.io/v1", "resource.k8s.io/v1beta2"),
    "ResourceClaim": ("resource.k8s.io/v1", "resource.k8s.io/v1beta2"),
    "ResourceClaimTemplate": ("resource.k8s.io/v1", "resource.k8s.io/v1beta2"),
    "PodGroup": ("scheduling.x-k8s.io/v1alpha1",),
    "StorageClass": ("storage.k8s.io/v1",),
    "PersistentVolume": ("v1",),
    "PersistentVolumeClaim": ("v1",),
}


class InputError(Exception):
    """Input that cannot be read at all: simulate exits 2 with this message."""


@dataclass(frozen=True, slots=True)
class Config:
    """Tessera's config file: the topology, and cluster-level default spread constraints."""

    topology: TopologyConfig = field(default_factory=TopologyConfig)
    default_spread: tuple[SpreadConstraint, ...] = ()


def load_config(path: str | pathlib.Path) -> Config:
    """A Tessera config file (YAML): `topology:` and `podTopologySpread:` sections."""
    p = pathlib.Path(path)
    try:
        doc = yaml.load(p.read_text(encoding="utf-8"), Loader=_Loader)
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror or e}") from None
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: invalid YAML: {str(e).splitlines()[0]}") from None
    try:
        topology = parse_topology_config(doc, ("podTopologySpread",))
        spread = parse_default_spread(doc.get("podTopologySpread")) if isinstance(doc, Mapping) else ()
    except ConfigError as e:
        raise InputError(f"{p}: {e}") from None
    except SpecError as e:
        raise InputError(f"{p}: {e.path}: {e.message}") from None
    return Config(topology, spread)


@dataclass(frozen=True, slots=True)
class Doc:
    obj: Mapping[str, Any]
    where: str  # "FILE: document index N" (plus ", items[i]" inside a List)

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind"))


def read_documents(path: str | pathlib.Path) -> list[Doc]:
    p = pathlib.Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: not UTF-8 text: {e}") from None
    return list(_documents(p, text))


def _documents(p: pathlib.Path, text: str) -> Iterator[Doc]:
    index = 0
    loader = _Loader(text)
    try:
        while True:
            try:
                if not loader.check_data():  # type: ignore[no-untyped-call]
                    break
                obj = loader.get_data()
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
                problem = getattr(e, "problem", None) or str(e).splitlines()[0]
                raise InputError(f"{p}: document index {index}: invalid YAML{at}: {problem}") from None
            except (ValueError, TypeError, OverflowError, RecursionError) as e:
                # Values PyYAML cannot build: a date like 2024-02-30, !!float x, a 5,000-digit number.
                raise InputError(f"{p}: document index {index}: invalid YAML value: {e}") from None
            if obj is not None:
                yield from _objects(p, index, obj)
            index += 1
    finally:
        loader.dispose()


def _objects(p: pathlib.Path, index: int, obj: Any) -> Iterator[Doc]:
    where = f"{p}: document index {index}"
    if not isinstance(obj, Mapping):
        raise InputError(f"{where}: expected a Kubernetes object (a mapping with apiVersion and kind), got {type(obj).__name__}")
    kind = obj.get("kind")
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List") and "items" in obj):
        items = obj.get("items")
        if not isinstance(items, list):
            raise InputError(f"{where}: {kind} must have a list of items")
        for i, item in enumerate(items):
            iw = f"{where}, items[{i}]"
            if not isinstance(item, Mapping):
                raise InputError(f"{iw}: expected a Kubernetes object, got {type(item).__name__}")
            if "kind" not in item and kind != "List":
                item = {**item, "kind": kind[: -len("List")], "apiVersion": obj.get("apiVersion")}
            _check_kind(iw, item)
            yield Doc(item, iw)
        return
    _check_kind(where, obj)
    yield Doc(obj, where)


def _check_kind(where: str, obj: Mapping[str, Any]) -> None:
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InputError(f"{where}: missing kind")
    versions = KNOWN_KINDS.get(kind)
    if versions is None:
        raise InputError(f"{where}: unknown kind {kind!r} (expected one of {', '.join(sorted(KNOWN_KINDS))})")
    api = obj.get("apiVersion")
    if api is not None and api not in versions:
        raise InputError(f"{where}: {kind} apiVersion {api!r} is not supported (expected {' or '.join(versions)})")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta.get("name"):
        raise InputError(f"{where}: {kind} has no metadata.name")
    ns = meta.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not ns):
        raise InputError(f"{where}: {kind} {meta['name']}: metadata.namespace must be a non-empty string")
