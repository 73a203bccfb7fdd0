"""What a pod asks of its placement besides devices, parsed once: inter-pod affinity and
anti-affinity, topology spread, preferred node affinity, host ports, and its effective
resource requests.

`matchLabelKeys` / `mismatchLabelKeys` are merged into the label selector here, with the pod's
own label values, as the API server does at admission (a key the pod does not carry is
ignored); a pod read back from a live API server already carries the merged selector, and
merging again adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from .errors import SpecError
from .labels import LabelRequirement, LabelSelector, parse_label_selector
from .nodeselector import NodeSelectorTerm, milli

if TYPE_CHECKING:
    from .parse import _Obj

HOSTNAME = "kubernetes.io/hostname"
Protocol = Literal["TCP", "UDP", "SCTP"]
# Pod-level resources (spec.resources): the names kube-scheduler takes from it instead of the
# containers' sum. cpu and memory since 1.32; hugepages since 1.34's PodLevelResources beta.
POD_LEVEL_RESOURCES = ("cpu", "memory")
POD_LEVEL_PREFIXES = ("hugepages-",)


@dataclass(frozen=True, slots=True)
class AffinityTerm:
    """A PodAffinityTerm. `namespaces` is resolved: the listed names, or the owning pod's
    namespace when neither names nor a namespace selector is given. A None selector selects
    no pod (upstream: a nil labelSelector matches nothing)."""

    selector: LabelSelector | None
    namespaces: frozenset[str]
    namespace_selector: LabelSelector | None
    topology_key: str

    def namespace_ok(self, namespace: str, ns_labels: Mapping[str, Mapping[str, str]]) -> bool:
        if namespace in self.namespaces:
            return True
        if self.namespace_selector is None:
            return False
        return self.namespace_selector.matches(ns_labels.get(namespace, {}))

    def matches(self, namespace: str, labels: Mapping[str, str], ns_labels: Mapping[str, Mapping[str, str]]) -> bool:
        return self.selector is not None and self.namespace_ok(namespace, ns_labels) and self.selector.matches(labels)


@dataclass(frozen=True, slots=True)
class PodAffinity:
    required: tuple[AffinityTerm, ...] = ()
    required_anti: tuple[AffinityTerm, ...] = ()
    preferred: tuple[tuple[int, AffinityTerm], ...] = ()
    preferred_anti: tuple[tuple[int, AffinityTerm], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.required or self.required_anti or self.preferred or self.preferred_anti)


@dataclass(frozen=True, slots=True)
class SpreadConstraint:
    max_skew: int
    topology_key: str
    hard: bool  # whenUnsatisfiable: DoNotSchedule (True) or ScheduleAnyway
    selector: LabelSelector | None
    min_domains: int | None = None
    honor_node_affinity: bool = True  # nodeAffinityPolicy: Honor (default) or Ignore
    honor_taints: bool = False  # nodeTaintsPolicy: Ignore (default) or Honor
    owner_uid: str = ""  # a default (cluster-level) constraint counts the pods of this controller


@dataclass(frozen=True, slots=True)
class HostPort:
    protocol: str
    ip: str  # "" for every address (0.0.0.0)
    port: int

    def conflicts(self, other: HostPort) -> bool:
        if self.port != other.port or self.protocol != other.protocol:
            return False
        return not self.ip or not other.ip or self.ip == other.ip


@dataclass(frozen=True, slots=True)
class PreferredNodeTerm:
    weight: int
    term: NodeSelectorTerm


# --- parsing ---------------------------------------------------------------------------------

def _selector(o: _Obj, raw: Mapping[str, Any], key: str, path: str) -> LabelSelector | None:
    v = raw.get(key)
    if v is None:
        return None
    return parse_label_selector(o.kind, o.ref, v, f"{path}.{key}")


def _merge_label_keys(o: _Obj, raw: Mapping[str, Any], path: str, selector: LabelSelector | None,
                      labels: Mapping[str, str], mismatch: bool) -> LabelSelector | None:
    match_keys = o.strings(raw, "matchLabelKeys", path)
    mismatch_keys = o.strings(raw, "mismatchLabelKeys", path) if mismatch else ()
    if not match_keys and not mismatch_keys:
        return selector
    if selector is None:
        what = "matchLabelKeys" if match_keys else "mismatchLabelKeys"
        raise o.fail(f"{path}.{what}", "cannot be set when labelSelector is not set")
    both = set(match_keys) & set(mismatch_keys)
    if both:
        raise o.fail(f"{path}.matchLabelKeys", f"key {sorted(both)[0]!r} is in both matchLabelKeys and mismatchLabelKeys")
    for k in match_keys:
        if k in labels:
            selector = selector.with_requirement(LabelRequirement(k, "In", frozenset((labels[k],))))
    for k in mismatch_keys:
        if k in labels:
            selector = selector.with_requirement(LabelRequirement(k, "NotIn", frozenset((labels[k],))))
    return selector


def _term(o: _Obj, raw: Any, path: str, namespace: str, labels: Mapping[str, str]) -> AffinityTerm:
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object (a PodAffinityTerm)")
    key = o.text(raw, "topologyKey", path)
    if not key:
        raise o.fail(f"{path}.topologyKey", "required: a node label key, e.g. kubernetes.io/hostname")
    selector = _merge_label_keys(o, raw, path, _selector(o, raw, "labelSelector", path), labels, mismatch=True)
    names = o.strings(raw, "namespaces", path)
    ns_sel = _selector(o, raw, "namespaceSelector", path)
    resolved = frozenset(names) if names or ns_sel is not None else frozenset((namespace,))
    return AffinityTerm(selector, resolved, ns_sel, key)


def _weighted(o: _Obj, raw: Any, path: str, namespace: str, labels: Mapping[str, str]) -> tuple[int, AffinityTerm]:
    if not isinstance(raw, Mapping):
        raise o.fail(path, "must be an object (a WeightedPodAffinityTerm)")
    w = o.integer(raw, "weight", path)
    if w is None or not 1 <= w <= 100:
        raise o.fail(f"{path}.weight", f"must be between 1 and 100, got {w}")
    return w, _term(o, o.mapping(raw, "podAffinityTerm", path, required=True), f"{path}.podAffinityTerm", namespace, labels)


def parse_pod_affinity(o: _Obj, affinity: Mapping[str, Any], namespace: str, labels: Mapping[str, str]) -> PodAffinity | None:
    out: dict[str, Any] = {}
    for field, attr in (("podAffinity", ""), ("podAntiAffinity", "_anti")):
        raw = o.mapping(affinity, field, "spec.affinity")
        base = f"spec.affinity.{field}"
        req_key = "requiredDuringSchedulingIgnoredDuringExecution"
        pref_key = "preferredDuringSchedulingIgnoredDuringExecution"
        out["required" + attr] = tuple(_term(o, t, f"{base}.{req_key}[{i}]", namespace, labels)
                                       for i, t in enumerate(o.items(raw, req_key, base)))
        out["preferred" + attr] = tuple(_weighted(o, t, f"{base}.{pref_key}[{i}]", namespace, labels)
                                        for i, t in enumerate(o.items(raw, pref_key, base)))
    pa = PodAffinity(**out)
    return None if pa.empty else pa


def parse_spread(o: _Obj, spec: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[SpreadConstraint, ...]:
    out = []
    seen: set[tuple[str, bool]] = set()
    for p, raw in o.objects(spec, "topologySpreadConstraints", "spec"):
        skew = o.integer(raw, "maxSkew", p)
        if skew is None or skew < 1:
            raise o.fail(f"{p}.maxSkew", f"must be at least 1, got {skew}")
        key = o.text(raw, "topologyKey", p)
        if not key:
            raise o.fail(f"{p}.topologyKey", "required: a node label key, e.g. topology.kubernetes.io/zone")
        when = o.text(raw, "whenUnsatisfiable", p, required=True)
        if when not in ("DoNotSchedule", "ScheduleAnyway"):
            raise o.fail(f"{p}.whenUnsatisfiable", f"must be DoNotSchedule or ScheduleAnyway, got {when!r}")
        hard = when == "DoNotSchedule"
        if (key, hard) in seen:
            raise o.fail(p, f"duplicate constraint for topologyKey {key!r} and whenUnsatisfiable {when}")
        seen.add((key, hard))
        min_domains = o.integer(raw, "minDomains", p)
        if min_domains is not None:
            if min_domains < 1:
                raise o.fail(f"{p}.minDomains", f"must be at least 1, got {min_domains}")
            if not hard:
                raise o.fail(f"{p}.minDomains", "can only be set with whenUnsatisfiable: DoNotSchedule")
        policy = {}
        for field, default in (("nodeAffinityPolicy", "Honor"), ("nodeTaintsPolicy", "Ignore")):
            v = o.text(raw, field, p) or default
            if v not in ("Honor", "Ignore"):
                raise o.fail(f"{p}.{field}", f"must be Honor or Ignore, got {v!r}")
            policy[field] = v == "Honor"
        selector = _merge_label_keys(o, raw, p, _selector(o, raw, "labelSelector", p), labels, mismatch=False)
        out.append(SpreadConstraint(skew, key, hard, selector, min_domains, policy["nodeAffinityPolicy"],
                                    policy["nodeTaintsPolicy"]))
    return tuple(out)


def parse_preferred_node_affinity(o: _Obj, node_affinity: Mapping[str, Any],
                                  parse_term: Any) -> tuple[PreferredNodeTerm, ...]:
    base = "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution"
    out = []
    for i, raw in enumerate(o.items(node_affinity, "preferredDuringSchedulingIgnoredDuringExecution",
                                    "spec.affinity.nodeAffinity")):
        p = f"{base}[{i}]"
        if not isinstance(raw, Mapping):
            raise o.fail(p, "must be an object")
        w = o.integer(raw, "weight", p)
        if w is None or not 1 <= w <= 100:
            raise o.fail(f"{p}.weight", f"must be between 1 and 100, got {w}")
        out.append(PreferredNodeTerm(w, parse_term(o, o.mapping(raw, "preference", p, required=True), f"{p}.preference")))
    return tuple(out)


def parse_host_ports(o: _Obj, spec: Mapping[str, Any]) -> tuple[HostPort, ...]:
    out: list[HostPort] = []
    for kind in ("initContainers", "containers"):
        for cp, c in o.objects(spec, kind, "spec"):
            if kind == "initContainers" and c.get("restartPolicy") != "Always":
                continue  # a plain init container has exited before the app's ports are taken
            for pp, port in o.objects(c, "ports", cp):
                hp = o.integer(port, "hostPort", pp)
                if not hp:
                    continue
                if not 1 <= hp <= 65535:
                    raise o.fail(f"{pp}.hostPort", f"must be between 1 and 65535, got {hp}")
                proto = o.text(port, "protocol", pp) or "TCP"
                if proto not in ("TCP", "UDP", "SCTP"):
                    raise o.fail(f"{pp}.protocol", f"must be TCP, UDP or SCTP, got {proto!r}")
                ip = o.text(port, "hostIP", pp)
                out.append(HostPort(proto, "" if ip in ("0.0.0.0", "::") else ip, hp))
    return tuple(out)


def _requests_of(o: _Obj, c: Mapping[str, Any], path: str) -> dict[str, Fraction]:
    out: dict[str, Fraction] = {}
    for k, v in o.mapping(o.mapping(c, "resources", path), "requests", f"{path}.resources").items():
        out[str(k)] = o.quantity(v, f"{path}.resources.requests[{k}]").value
    return out


def _add(into: dict[str, Fraction], more: Mapping[str, Fraction]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, Fraction(0)) + v


def _max(into: dict[str, Fraction], other: Mapping[str, Fraction]) -> None:
    for k, v in other.items():
        if v > into.get(k, Fraction(0)):
            into[k] = v


def pod_requests(o: _Obj, spec: Mapping[str, Any]) -> dict[str, int]:
    """What the pod asks of its node, as kube-scheduler's NodeResourcesFit computes it: the app
    containers plus the restartable init containers (sidecars), or the largest init container
    together with the sidecars started before it, whichever is more, per resource; pod-level
    `spec.resources.requests` replace the containers' figure for the resources they name; then
    `spec.overhead` is added. Limits do not count. In milli-units, like node allocatable."""
    total: dict[str, Fraction] = {}
    for cp, c in o.objects(spec, "containers", "spec"):
        _add(total, _requests_of(o, c, cp))
    sidecars: dict[str, Fraction] = {}
    init_peak: dict[str, Fraction] = {}
    for cp, c in o.objects(spec, "initContainers", "spec"):
        req = _requests_of(o, c, cp)
        policy = o.text(c, "restartPolicy", cp)
        if policy and policy != "Always":
            raise o.fail(f"{cp}.restartPolicy", f"must be Always (a sidecar) or unset, got {policy!r}")
        if policy == "Always":
            _add(total, req)
            _add(sidecars, req)
            _max(init_peak, sidecars)
        else:
            during = dict(sidecars)
            _add(during, req)
            _max(init_peak, during)
    _max(total, init_peak)
    pod_level = o.mapping(o.mapping(spec, "resources", "spec"), "requests", "spec.resources")
    for k, v in pod_level.items():
        name = str(k)
        if name in POD_LEVEL_RESOURCES or name.startswith(POD_LEVEL_PREFIXES):
            total[name] = o.quantity(v, f"spec.resources.requests[{name}]").value
    for k, v in o.mapping(spec, "overhead", "spec").items():
        total[str(k)] = total.get(str(k), Fraction(0)) + o.quantity(v, f"spec.overhead[{k}]").value
    return {k: milli(v) for k, v in total.items() if v}


# The keys a default constraint may have (docs/configuration.md documents each).
DEFAULT_SPREAD_KEYS = ("maxSkew", "topologyKey", "whenUnsatisfiable", "minDomains", "nodeAffinityPolicy", "nodeTaintsPolicy")


def parse_default_spread(raw: Any) -> tuple[SpreadConstraint, ...]:
    """The `podTopologySpread.defaultConstraints` of Tessera's config file, shaped as
    kube-scheduler's PodTopologySpreadArgs: constraints without a labelSelector, applied to pods
    that have none of their own and count the pods of the same controller."""
    from .parse import _Obj

    o = _Obj("Config", "")
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise o.fail("podTopologySpread", "must be a mapping with defaultConstraints")
    unknown = set(raw) - {"defaultConstraints", "defaultingType"}
    if unknown:
        raise o.fail("podTopologySpread", f"unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                                          "(expected defaultConstraints, defaultingType)")
    if raw.get("defaultingType", "List") != "List":
        raise o.fail("podTopologySpread.defaultingType", "only List is supported (Tessera has no System defaults)")
    items = raw.get("defaultConstraints") or []
    if not isinstance(items, list):
        raise o.fail("podTopologySpread.defaultConstraints", "must be a list of topology spread constraints")
    for i, c in enumerate(items):
        if isinstance(c, Mapping) and ("labelSelector" in c or "matchLabelKeys" in c):
            raise o.fail(f"podTopologySpread.defaultConstraints[{i}]",
                         "must not set labelSelector or matchLabelKeys: a default counts the pod's own controller's pods")
        if isinstance(c, Mapping) and (unknown := set(map(str, c)) - set(DEFAULT_SPREAD_KEYS)):
            raise o.fail(f"podTopologySpread.defaultConstraints[{i}]", f"unknown field(s) {', '.join(sorted(unknown))} "
                                                                      f"(expected {', '.join(DEFAULT_SPREAD_KEYS)})")
    try:
        return parse_spread(o, {"topologySpreadConstraints": items}, {})
    except SpecError as e:
        raise SpecError("Config", "", e.path.replace("spec.topologySpreadConstraints", "podTopologySpread.defaultConstraints"),
                        e.message) from None


def controller_uid(meta: Mapping[str, Any]) -> str:
    """The UID of the pod's controlling owner (a ReplicaSet, StatefulSet, Job...), or ""."""
    for ref in meta.get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") is True and isinstance(ref.get("uid"), str):
            return str(ref["uid"])
    return ""
