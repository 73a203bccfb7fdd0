"""Reading Kubernetes objects from YAML files for `tessera simulate`.

Strict by default, as the API server and `kubectl --validate=strict` are: duplicate keys, unknown
fields, values of the wrong shape and the API server's structural rules are errors naming the
file, document index, object and field path (`--validate=warn` makes them warnings). Objects of
`resource.k8s.io/v1beta1` and `v1beta2` are converted to v1 as the API server converts them;
workload controllers (Deployments, Jobs, JobSets, ...) become the pods they would create; kinds
simulate does not use (Services, ConfigMaps, ...) are skipped with one summary warning.
Unparsable YAML, a document that is not an object, or a known kind at an unknown apiVersion is
an input error (exit 2). An object that parses but fails the engine's own checks is kept with
its error, so only what depends on it suffers.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from allocator.errors import SpecError
from allocator.parse import ParsedObject, parse_node, parse_resource_slice
from allocator.podspec import SpreadConstraint, parse_default_spread
from topology import TopologyConfig, parse_topology_config
from topology.config import ConfigError, Key

from .gcpause import collector_paused
from .limits import DEFAULT_BURST, DEFAULT_QPS

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

DRA = ("resource.k8s.io/v1", "resource.k8s.io/v1beta2", "resource.k8s.io/v1beta1")
KNOWN_KINDS = {
    "Node": ("v1",),
    "Namespace": ("v1",),
    "Pod": ("v1",),
    "DeviceClass": DRA,
    "ResourceSlice": DRA,
    "ResourceClaim": DRA,
    "ResourceClaimTemplate": DRA,
    # scheduler-plugins, the Kubernetes 1.36 Workload API, Volcano (see allocator.model.PodGroup)
    "PodGroup": ("scheduling.x-k8s.io/v1alpha1", "scheduling.k8s.io/v1alpha2", "scheduling.volcano.sh/v1beta1"),
    "Workload": ("scheduling.k8s.io/v1alpha2",),
    "StorageClass": ("storage.k8s.io/v1",),
    "PersistentVolume": ("v1",),
    "PersistentVolumeClaim": ("v1",),
    "PriorityClass": ("scheduling.k8s.io/v1",),
    "PodDisruptionBudget": ("policy/v1",),
    "HyperNode": ("topology.volcano.sh/v1alpha1",),
}
Validation = Literal["strict", "warn"]
MAX_PROBLEMS_SHOWN = 20

class InputError(Exception):
    """Input that cannot be read at all: simulate exits 2 with this message."""


# `tessera serve`'s client-side API limit when neither --config nor the flags set one. Measured
# (bench/README.md, API calls per scheduled pod): 4 requests per pod placed (the claim's finalizer
# and owner annotation, its status, the binding, the Scheduled event), so qps 2000 sustains ~500
# pods/s: above the ~290 pods/s the secondary scheduler sustains against the test API server, level
# with the ~500 it reaches with the client's per-request environment lookups off (where the previous
# 1000 held it at 250), and still a bound on a runaway loop; the burst is two seconds of it.
# README.md ("API client") says the same.
SERVE_QPS = DEFAULT_QPS
SERVE_BURST = DEFAULT_BURST

CLIENT_CONNECTION_SECTION = Key(
    "clientConnection", "mapping",
    "`tessera serve`'s API client, named as in kube-scheduler's KubeSchedulerConfiguration: a client-side token "
    "bucket on every request but watches (`qps` a second, at most `burst` at once), as client-go's. The flags "
    "`--kube-api-qps` and `--kube-api-burst` override these. kube-scheduler's other `clientConnection` keys "
    "(`kubeconfig`, `contentType`, `acceptContentTypes`) are not Tessera's: `--kubeconfig` is a flag, and Tessera "
    "always speaks JSON.",
    keys=(
        Key("qps", "number, 0 or more", "API requests a second, watches excluded; 0: no client-side limit. Tessera "
            "sends 4 requests per pod it places (the claim's finalizer, the claim's status, the binding, the "
            "Scheduled event; bench/README.md), so the default sustains about 500 pods/s, above what the secondary "
            "scheduler was measured to sustain, and bounds a runaway loop. kube-scheduler's default is 50 (12.5 "
            "pods/s at its 4 requests per pod).", default=SERVE_QPS, example=50.0),
        Key("burst", "integer, at least 1", "Requests allowed at once above the rate (the bucket's size; the "
            "default is two seconds at the default rate). kube-scheduler's default is 100.",
            default=SERVE_BURST, example=100),
    ))


@dataclass(frozen=True, slots=True)
class Config:
    """Tessera's config file: the topology, cluster-level default spread constraints, and the API
    client's limits (`clientConnection`)."""

    topology: TopologyConfig = field(default_factory=TopologyConfig)
    default_spread: tuple[SpreadConstraint, ...] = ()
    client_qps: float = SERVE_QPS
    client_burst: int = SERVE_BURST


def _client_connection(raw: Any) -> tuple[float, int]:
    """`clientConnection.qps/burst`, checked; absent keys keep their defaults."""
    if raw is None:
        return SERVE_QPS, SERVE_BURST
    if not isinstance(raw, Mapping):
        raise InputError("clientConnection: must be a mapping")
    known = [k.name for k in CLIENT_CONNECTION_SECTION.keys]
    unknown = [str(k) for k in raw if k not in known]
    if unknown:
        raise InputError(f"clientConnection: unknown field(s) {', '.join(sorted(unknown))} (expected {', '.join(known)})")
    qps, burst = raw.get("qps", SERVE_QPS), raw.get("burst", SERVE_BURST)
    if isinstance(qps, bool) or not isinstance(qps, int | float) or math.isnan(qps) or math.isinf(qps) or qps < 0:
        raise InputError(f"clientConnection.qps: must be a number, 0 (no limit) or more, got {qps!r}")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise InputError(f"clientConnection.burst: must be an integer, at least 1, got {burst!r}")
    return float(qps), burst


def load_config(path: str | pathlib.Path | None) -> Config:
    """A Tessera config file (YAML): `topology:`, `podTopologySpread:` and `clientConnection:`
    sections; the defaults without one (no --config)."""
    if not path:
        return Config()
    p = pathlib.Path(path)
    try:
        doc = yaml.load(p.read_text(encoding="utf-8"), Loader=_Loader)
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror or e}") from None
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: invalid YAML: {str(e).splitlines()[0]}") from None
    try:
        topology = parse_topology_config(doc, ("podTopologySpread", CLIENT_CONNECTION_SECTION.name))
        spread = parse_default_spread(doc.get("podTopologySpread")) if isinstance(doc, Mapping) else ()
        qps, burst = _client_connection(doc.get(CLIENT_CONNECTION_SECTION.name) if isinstance(doc, Mapping) else None)
    except ConfigError as e:
        raise InputError(f"{p}: {e}") from None
    except SpecError as e:
        raise InputError(f"{p}: {e.path}: {e.message}") from None
    except InputError as e:
        raise InputError(f"{p}: {e}") from None
    return Config(topology, spread, qps, burst)


@dataclass(frozen=True, slots=True)
class Doc:
    obj: Mapping[str, Any]
    where: str  # "FILE: document index N" (plus ", items[i]" inside a List)

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind"))


@dataclass(slots=True)
class Reading:
    """What reading files found besides the objects: problems of strict validation, objects
    skipped and converted."""

    problems: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # kind -> objects simulate does not use
    converted: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, apiVersion) -> objects

    def notes(self) -> list[str]:
        out = [f"converted {n} {kind} object(s) from {api} to resource.k8s.io/v1, as the API server does"
               for (kind, api), n in sorted(self.converted.items())]
        if self.skipped:
            what = ", ".join(f"{n} {k}" for k, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])))
            out.append(f"skipped {sum(self.skipped.values())} object(s) simulate does not use: {what}")
        return out


@dataclass(slots=True)
class Inputs:
    cluster: list[Doc]
    workload: list[Doc]
    warnings: list[str]  # problems --validate=warn let through
    notes: list[str]  # conversions, expansions, skipped objects


def load_inputs(cluster: str | pathlib.Path, workload: str | pathlib.Path, validate: Validation = "strict") -> Inputs:
    """Both files of a simulation, checked, converted and with controllers expanded."""
    from .controllers import ControllerError, expand  # controllers build on Doc

    reading = Reading()
    cluster_docs = _read(pathlib.Path(cluster), reading)
    workload_docs = _read(pathlib.Path(workload), reading)
    try:
        c = expand(cluster_docs, workload_docs)
        w = expand(workload_docs, [*cluster_docs, *c.docs])
    except ControllerError as e:
        raise InputError(str(e)) from None
    warnings = _settle(reading, validate)
    notes = [*reading.notes(), *c.notes, *w.notes]
    # What the cluster's controllers would create next is scheduled, ahead of the workload.
    given = {id(d) for d in cluster_docs}
    cluster_now = [d for d in c.docs if id(d) in given or d.kind not in ("Pod", "PersistentVolumeClaim")]
    created = [d for d in c.docs if id(d) not in given and d.kind in ("Pod", "PersistentVolumeClaim")]
    return Inputs(cluster_now, [*created, *w.docs], warnings, notes)


def read_documents(path: str | pathlib.Path, validate: Validation = "strict") -> list[Doc]:
    """One file's objects, checked and converted (controllers not expanded)."""
    reading = Reading()
    docs = _read(pathlib.Path(path), reading)
    _settle(reading, validate)
    return docs


def _settle(reading: Reading, validate: Validation) -> list[str]:
    """Strict: any problem ends the run (exit 2), all of them listed (up to a screenful).
    Warn: they are warnings."""
    if not reading.problems or validate == "warn":
        return list(reading.problems)
    shown = reading.problems[:MAX_PROBLEMS_SHOWN]
    more = len(reading.problems) - len(shown)
    tail = f"\n  ... and {more} more" if more else ""
    raise InputError(f"{len(reading.problems)} problem(s) the API server would refuse (--validate=warn to go on "
                     "anyway):\n  " + "\n  ".join(shown) + tail)


def _read(p: pathlib.Path, reading: Reading) -> list[Doc]:
    with collector_paused():
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"{p}: cannot read: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise InputError(f"{p}: not UTF-8 text: {e}") from None
        if text[:64].lstrip(" \t\r\n").startswith(("{", "[")):
            docs = _json_documents(p, text, reading)
            if docs is not None:
                return docs
        return list(_documents(p, text, reading))


# --- JSON -----------------------------------------------------------------------------------
# A JSON file (`kubectl get -o json`: one List) is read as JSON, item by item: each item is
# decoded, checked and (a ResourceSlice) parsed before the next is decoded, so the raw JSON of a
# whole fleet never exists at once, and it is several times faster than YAML. Anything the JSON
# reader cannot take as it is (a repeated key, NaN, text that is not JSON) is read as YAML
# instead, which reads JSON too and names each repeated key with its line. JSON and YAML differ
# only in numbers such as 1e3, which JSON reads as a number and YAML 1.1 as a string.

class _NotPlainJSON(Exception):
    """Read the file as YAML instead."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _NotPlainJSON("a repeated key")
    return d


def _no_constant(name: str) -> Any:
    raise _NotPlainJSON(f"{name} is not JSON")


_DECODE = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant).raw_decode
_JSON_BLANK = re.compile(r"[ \t\n\r]*")


def _skip(text: str, i: int) -> int:
    """Past the blanks at i."""
    m = _JSON_BLANK.match(text, i)
    return m.end() if m is not None else i


def _json_documents(p: pathlib.Path, text: str, reading: Reading) -> list[Doc] | None:
    """The file's objects if it is plain JSON, else None."""
    attempt = Reading()
    try:
        docs = _json_stream(p, text, attempt)
    except (_NotPlainJSON, json.JSONDecodeError, IndexError):
        return None
    if docs is None:
        return None
    reading.problems.extend(attempt.problems)
    reading.skipped.update(attempt.skipped)
    reading.converted.update(attempt.converted)
    return docs


def _json_stream(p: pathlib.Path, text: str, reading: Reading) -> list[Doc] | None:
    i = _skip(text, 0)
    where = f"{p}: document index 0"
    if text[i] != "{":
        obj, i = _DECODE(text, i)
        if text[_skip(text, i):]:
            raise _NotPlainJSON("more than one value")
        return list(_objects(p, 0, obj, reading))
    shell: dict[str, Any] = {}
    entries: list[Doc | Mapping[str, Any] | None] = []  # a Doc, or an item waiting for the List's kind
    has_items = False
    i = _skip(text, i + 1)
    while text[i] != "}":
        key, i = _DECODE(text, i)
        i = _skip(text, i)
        if not isinstance(key, str) or text[i] != ":" or key in shell or (key == "items" and has_items):
            raise _NotPlainJSON("not an object key")
        i = _skip(text, i + 1)
        if key == "items" and text[i] == "[":
            has_items = True
            i = _skip(text, i + 1)
            while text[i] != "]":
                item, i = _DECODE(text, i)
                iw = f"{where}, items[{len(entries)}]"
                known = shell.get("kind")
                if isinstance(item, Mapping) and "kind" not in item and isinstance(known, str) and known.endswith("List") \
                        and known != "List" and "apiVersion" in shell:
                    item = {**item, "kind": known[: -len("List")], "apiVersion": shell["apiVersion"]}
                if isinstance(item, Mapping) and "kind" in item:
                    entries.append(_object(iw, item, reading))
                else:
                    entries.append(item)
                i = _skip(text, i)
                if text[i] == ",":
                    i = _skip(text, i + 1)
                elif text[i] != "]":
                    raise _NotPlainJSON("not a list")
            i += 1
        else:
            shell[key], i = _DECODE(text, i)
        i = _skip(text, i)
        if text[i] == ",":
            i = _skip(text, i + 1)
        elif text[i] != "}":
            raise _NotPlainJSON("not an object")
    if text[_skip(text, i + 1):]:
        raise _NotPlainJSON("more than one value")
    kind = shell.get("kind")
    if not has_items:
        return list(_objects(p, 0, shell, reading))  # one object, not a List
    if not (kind == "List" or (isinstance(kind, str) and kind.endswith("List"))):
        return None  # `items` in an object that is no List: read it whole, as YAML (rare)
    docs = []
    for index, entry in enumerate(entries):
        if entry is None or isinstance(entry, Doc):
            if entry is not None:
                docs.append(entry)
            continue
        iw = f"{where}, items[{index}]"
        if not isinstance(entry, Mapping):
            raise InputError(f"{iw}: expected a Kubernetes object, got {type(entry).__name__}")
        if kind != "List":
            entry = {**entry, "kind": kind[: -len("List")], "apiVersion": shell.get("apiVersion")}
        doc = _object(iw, entry, reading)
        if doc is not None:
            docs.append(doc)
    return docs


def _documents(p: pathlib.Path, text: str, reading: Reading) -> Iterator[Doc]:
    from .validate import yaml_documents

    index = 0
    documents = yaml_documents(text)
    try:
        while True:
            try:
                document = next(documents, None)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
                problem = getattr(e, "problem", None) or str(e).splitlines()[0]
                raise InputError(f"{p}: document index {index}: invalid YAML{at}: {problem}") from None
            except (ValueError, TypeError, OverflowError, RecursionError) as e:
                # Values PyYAML cannot build: a date like 2024-02-30, !!float x, a 5,000-digit number.
                raise InputError(f"{p}: document index {index}: invalid YAML value: {e}") from None
            if document is None:
                break
            obj, duplicates = document
            reading.problems.extend(f"{p}: document index {index}: {d}" for d in duplicates)
            if obj is not None:
                yield from _objects(p, index, obj, reading)
            index += 1
    finally:
        documents.close()


def _objects(p: pathlib.Path, index: int, obj: Any, reading: Reading) -> Iterator[Doc]:
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
            doc = _object(iw, item, reading)
            if doc is not None:
                yield doc
        return
    doc = _object(where, obj, reading)
    if doc is not None:
        yield doc


def _object(where: str, obj: Mapping[str, Any], reading: Reading) -> Doc | None:
    """The object as simulate uses it (converted to v1), None for a kind it does not use."""
    from .controllers import CONTROLLER_KINDS
    from .convert import CONVERTIBLE, ConversionError, to_v1
    from .validate import object_problems, rule_problems, schema_problems

    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InputError(f"{where}: missing kind")
    versions = KNOWN_KINDS.get(kind) or CONTROLLER_KINDS.get(kind)
    if versions is None:
        reading.skipped[kind] += 1
        return None
    api = obj.get("apiVersion")
    if api is not None and api not in versions:
        raise InputError(f"{where}: {kind} apiVersion {api!r} is not supported (expected {' or '.join(versions)})")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta.get("name"):
        raise InputError(f"{where}: {kind} has no metadata.name")
    ns = meta.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not ns):
        raise InputError(f"{where}: {kind} {meta['name']}: metadata.namespace must be a non-empty string")
    name = f"{kind} {ns + '/' if ns else ''}{meta['name']}"
    if api in CONVERTIBLE.get(kind, ()):  # the schema of its own version, the rules of v1
        reading.problems.extend(f"{where}: {name}: {pr.path}: {pr.message}" for pr in schema_problems(obj))
        try:
            obj = to_v1(obj)
        except ConversionError as e:
            reading.problems.append(f"{where}: {e}")
            return None
        reading.converted[(kind, str(api))] += 1
        rules = rule_problems(obj)
    else:  # the rules see the object as the schema did: checked in one go
        schema, rules = object_problems(obj)
        reading.problems.extend(f"{where}: {name}: {pr.path}: {pr.message}" for pr in schema)
    reading.problems.extend(f"{where}: {name}: {pr.path}: {pr.message}" for pr in rules)
    doc = Doc(obj, where)
    if kind == "ResourceSlice":
        return _parsed(doc, parse_resource_slice)
    if kind == "Node":
        return _parsed(doc, parse_node)
    return doc


def _parsed(doc: Doc, parse: Callable[[Mapping[str, Any]], Any]) -> Doc:
    """A slice or node parsed now, its Doc keeping only the object's identity and the parsed model
    (`allocator.parse.ParsedObject`): no raw device JSON outlives its own document, which is most
    of a fleet's file, and no node's status (images, conditions: most of a node `kubectl get`
    prints). One that does not parse stays raw, so simulate reports it as ever."""
    try:
        parsed = parse(doc.obj)
    except SpecError:
        return doc
    return Doc(ParsedObject.of(doc.obj, parsed), doc.where)

