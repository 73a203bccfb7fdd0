"""Tessera's placement rules beyond devices against a deliberately naive reference.

On random small clusters (nodes with zone and rack labels, taints and allocatable resources;
namespaces with labels; placed pods with labels, requests, host ports and affinities; storage
classes, PersistentVolumes and claims) the nodes `Session.filter` finds feasible for a pod must be
exactly those a reference, written here from kube-scheduler's documented semantics straight on
the JSON objects, finds feasible:

- NodeResourcesFit: the summed container requests of each resource the pod asks for, and one
  more pod, within `status.allocatable` less what the placed pods (deleting or not) take;
- NodePorts: host ports, per protocol, with wildcard host IPs;
- NodeAffinity: `spec.nodeSelector` and required node affinity;
- TaintToleration: NoSchedule and NoExecute taints;
- InterPodAffinity: the pod's required affinity (with the first-pod-of-a-self-affine-group
  exception) and anti-affinity, and the placed pods' required anti-affinity (the symmetric check);
- PodTopologySpread (DoNotSchedule): maxSkew, minDomains, nodeAffinityPolicy, nodeTaintsPolicy and
  the global minimum over eligible domains;
- VolumeBinding: a bound claim's PV node affinity; an unbound WaitForFirstConsumer claim served by
  a distinct Available PV the node reaches, or by dynamic provisioning; an unbound Immediate
  claim fits nowhere.

The reference imports nothing of Tessera's: every rule walks every placed pod and every node.
Three properties: `filter` equals the reference; `decide` places the pod on a reference node
exactly when there is one; and scheduling a run of identical pods (mutually anti-affine on the
hostname, or spread over zones) keeps the rule and the nodes' capacity after every step, each
choice being a node the reference allows.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import allocator as alloc
from allocator.volumes import parse_persistent_volume, parse_persistent_volume_claim, parse_storage_class
from tests.builders import namespace, node, pod

Obj = dict[str, Any]

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
RACK = "rack"
TOPOLOGY_KEYS = (HOST, ZONE, RACK)
ZONES = ("a", "b", "c")
RACKS = ("r1", "r2")
APPS = ("x", "y")
TIERS = ("1", "2")
NAMESPACES = ("default", "team")
NO_PROVISIONER = "kubernetes.io/no-provisioner"
LIGHT = ("spread", "affinity", "volumes")  # the foci that keep NodeResourcesFit and NodePorts out of the way


# --- the naive reference ---------------------------------------------------------------------------
#
# Everything below reads the raw JSON. Nothing of allocator/ is used.

_QUANTITY = re.compile(r"^([0-9]+)(m|Ki|Mi|Gi|k|M|G)?$")
_SUFFIX = {None: Fraction(1), "m": Fraction(1, 1000), "k": Fraction(10**3), "M": Fraction(10**6),
           "G": Fraction(10**9), "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30)}


def quantity(s: str) -> Fraction:
    """The quantities this file writes: an integer with an optional suffix."""
    m = _QUANTITY.match(s)
    assert m is not None, f"unexpected quantity {s!r}"
    return int(m.group(1)) * _SUFFIX[m.group(2)]


def labels_of(obj: Obj) -> dict[str, str]:
    return dict(obj["metadata"].get("labels") or {})


def selector_matches(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector: None selects nothing, {} everything; matchLabels AND matchExpressions."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    return all(expression_holds(e, labels.get(e["key"])) for e in selector.get("matchExpressions") or [])


def expression_holds(e: Obj, v: str | None) -> bool:
    """One In/NotIn/Exists/DoesNotExist requirement on a label's value (None: absent)."""
    op = e["operator"]
    if op == "In":
        return v is not None and v in e["values"]
    if op == "NotIn":
        return v is None or v not in e["values"]
    if op == "Exists":
        return v is not None
    return op == "DoesNotExist" and v is None


def node_term_matches(term: Obj, n: Obj) -> bool:
    """A NodeSelectorTerm: its expressions and fields ANDed; an empty term selects nothing."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = labels_of(n)
    if not all(expression_holds(e, labels.get(e["key"])) for e in exprs):
        return False
    for f in fields:
        assert f["key"] == "metadata.name" and f["operator"] in ("In", "NotIn")
        inside = n["metadata"]["name"] in f["values"]
        if inside != (f["operator"] == "In"):
            return False
    return True


def node_selector_matches(ns: Obj, n: Obj) -> bool:
    """A NodeSelector: its terms ORed."""
    return any(node_term_matches(t, n) for t in ns.get("nodeSelectorTerms") or [])


def node_affinity_ok(p: Obj, n: Obj) -> bool:
    """spec.nodeSelector and the required node affinity."""
    labels = labels_of(n)
    for k, v in (p["spec"].get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((p["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    return required is None or node_selector_matches(required, n)


def tolerates(tol: Obj, taint: Obj) -> bool:
    if tol.get("effect") and tol["effect"] != taint["effect"]:
        return False
    if tol.get("key") and tol["key"] != taint["key"]:
        return False
    if tol.get("operator", "Equal") == "Exists":
        return True
    return bool(tol.get("key")) and tol.get("value", "") == taint.get("value", "")


def taints_ok(p: Obj, n: Obj) -> bool:
    """Every NoSchedule / NoExecute taint of the node is tolerated."""
    tolerations = p["spec"].get("tolerations") or []
    for taint in (n.get("spec") or {}).get("taints") or []:
        if taint["effect"] in ("NoSchedule", "NoExecute") and not any(tolerates(t, taint) for t in tolerations):
            return False
    return True


def requests_of(p: Obj) -> dict[str, Fraction]:
    out: dict[str, Fraction] = {}
    for c in p["spec"].get("containers") or []:
        for k, v in ((c.get("resources") or {}).get("requests") or {}).items():
            out[k] = out.get(k, Fraction(0)) + quantity(v)
    return out


def host_ports_of(p: Obj) -> list[tuple[str, str, int]]:
    out = []
    for c in p["spec"].get("containers") or []:
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                ip = port.get("hostIP", "")
                out.append((port.get("protocol", "TCP"), "" if ip in ("", "0.0.0.0") else ip, port["hostPort"]))
    return out


def ns_of(p: Obj) -> str:
    return str(p["metadata"].get("namespace") or "default")


def term_namespace_ok(term: Obj, owner_ns: str, pod_ns: str, namespaces: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether a PodAffinityTerm of a pod in `owner_ns` looks at pods in `pod_ns`."""
    names = term.get("namespaces") or []
    ns_sel = term.get("namespaceSelector")
    if not names and ns_sel is None:
        return pod_ns == owner_ns
    if pod_ns in names:
        return True
    return ns_sel is not None and selector_matches(ns_sel, namespaces.get(pod_ns, {}))


def term_matches(term: Obj, owner_ns: str, p: Obj, namespaces: Mapping[str, Mapping[str, str]]) -> bool:
    return term_namespace_ok(term, owner_ns, ns_of(p), namespaces) and selector_matches(term.get("labelSelector"), labels_of(p))


def required_terms(p: Obj, kind: str) -> list[Obj]:
    raw = ((p["spec"].get("affinity") or {}).get(kind) or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    return list(raw or [])


@dataclass
class Scenario:
    nodes: list[Obj]
    namespaces: list[Obj]
    existing: list[Obj]  # placed pods, spec.nodeName set
    incoming: Obj
    classes: list[Obj] = field(default_factory=list)
    pvs: list[Obj] = field(default_factory=list)
    pvcs: list[Obj] = field(default_factory=list)


def ref_resources_ok(p: Obj, n: Obj, on_node: Sequence[Obj]) -> bool:
    alloc_ = {k: quantity(v) for k, v in n["status"]["allocatable"].items()}
    if len(on_node) + 1 > alloc_["pods"]:
        return False
    want = requests_of(p)
    for res, v in want.items():
        if v == 0:
            continue  # kube-scheduler checks only the resources the pod requests
        used = sum((requests_of(q).get(res, Fraction(0)) for q in on_node), Fraction(0))
        if used + v > alloc_[res]:
            return False
    return True


def ref_ports_ok(p: Obj, on_node: Sequence[Obj]) -> bool:
    for proto, ip, port in host_ports_of(p):
        for q in on_node:
            for qproto, qip, qport in host_ports_of(q):
                if port == qport and proto == qproto and (not ip or not qip or ip == qip):
                    return False
    return True


def ref_pod_affinity_ok(s: Scenario, n: Obj, node_of: Mapping[str, Obj], ns_labels: Mapping[str, Mapping[str, str]]) -> bool:
    p = s.incoming
    pns = ns_of(p)
    labels = labels_of(n)
    terms = required_terms(p, "podAffinity")
    if terms:
        if not all(t["topologyKey"] in labels for t in terms):
            return False
        matching = [q for q in s.existing if all(term_matches(t, pns, q, ns_labels) for t in terms)]

        def at_value(t: Obj) -> bool:
            key = t["topologyKey"]
            return any(labels_of(node_of[q["metadata"]["name"]]).get(key) == labels[key] for q in matching)

        if not all(at_value(t) for t in terms):
            anywhere = any(t["topologyKey"] in labels_of(node_of[q["metadata"]["name"]]) for q in matching for t in terms)
            self_affine = all(term_matches(t, pns, p, ns_labels) for t in terms)
            if anywhere or not self_affine:
                return False
    for t in required_terms(p, "podAntiAffinity"):
        key = t["topologyKey"]
        if key not in labels:
            continue
        for q in s.existing:
            if term_matches(t, pns, q, ns_labels) and labels_of(node_of[q["metadata"]["name"]]).get(key) == labels[key]:
                return False
    # The placed pods' required anti-affinity, seen from the incoming pod.
    for q in s.existing:
        qnode = labels_of(node_of[q["metadata"]["name"]])
        for t in required_terms(q, "podAntiAffinity"):
            key = t["topologyKey"]
            if key in labels and key in qnode and qnode[key] == labels[key] and term_matches(t, ns_of(q), p, ns_labels):
                return False
    return True


def hard_spread(p: Obj) -> list[Obj]:
    return [c for c in p["spec"].get("topologySpreadConstraints") or [] if c["whenUnsatisfiable"] == "DoNotSchedule"]


def ref_spread_ok(s: Scenario, n: Obj, node_of: Mapping[str, Obj]) -> bool:
    p = s.incoming
    hard = hard_spread(p)
    keys = [c["topologyKey"] for c in hard]
    for c in hard:
        key = c["topologyKey"]
        if key not in labels_of(n):
            return False
        eligible = []
        for m in s.nodes:
            if not all(k in labels_of(m) for k in keys):
                continue
            if c.get("nodeAffinityPolicy", "Honor") == "Honor" and not node_affinity_ok(p, m):
                continue
            if c.get("nodeTaintsPolicy", "Ignore") == "Honor" and not taints_ok(p, m):
                continue
            eligible.append(m)
        eligible_names = {m["metadata"]["name"] for m in eligible}
        sel = c.get("labelSelector")
        counts: Counter[str] = Counter({labels_of(m)[key]: 0 for m in eligible})
        for q in s.existing:
            qn = node_of[q["metadata"]["name"]]
            if (qn["metadata"]["name"] in eligible_names and ns_of(q) == ns_of(p)
                    and not q["metadata"].get("deletionTimestamp")
                    and sel != {}  # upstream quirk: an empty selector counts no placed pod
                    and selector_matches(sel, labels_of(q))):
                counts[labels_of(qn)[key]] += 1
        minimum = min(counts.values()) if counts else 2**31 - 1
        if c.get("minDomains") is not None and len(counts) < c["minDomains"]:
            minimum = 0
        self_match = 1 if selector_matches(sel, labels_of(p)) else 0
        if counts.get(labels_of(n)[key], 0) + self_match - minimum > c["maxSkew"]:
            return False
    return True


def pod_claims(s: Scenario) -> list[Obj]:
    by_name = {(ns_of(c), c["metadata"]["name"]): c for c in s.pvcs}
    out = []
    for v in s.incoming["spec"].get("volumes") or []:
        out.append(by_name[(ns_of(s.incoming), v["persistentVolumeClaim"]["claimName"])])
    return out


def ref_volumes(s: Scenario) -> dict[str, bool] | None:
    """Per node, whether the pod's claims can be served there; None when no node can serve them."""
    classes = {c["metadata"]["name"]: c for c in s.classes}
    pvs = {pv["metadata"]["name"]: pv for pv in s.pvs}
    claims = pod_claims(s)
    for c in claims:
        if not c["spec"].get("volumeName"):
            sc = classes[c["spec"]["storageClassName"]]
            if sc.get("volumeBindingMode", "Immediate") != "WaitForFirstConsumer":
                return None  # an unbound Immediate claim: the volume controller has to bind it first
    out = {}
    for n in s.nodes:
        options: list[list[str | None]] = []  # per unbound claim: PV names, None for provisioning
        ok = True
        for c in claims:
            spec = c["spec"]
            if spec.get("volumeName"):
                pv = pvs[spec["volumeName"]]
                required = (pv["spec"].get("nodeAffinity") or {}).get("required")
                if required is not None and not node_selector_matches(required, n):
                    ok = False
                continue
            sc = classes[spec["storageClassName"]]
            want = quantity(spec["resources"]["requests"]["storage"])
            opts: list[str | None] = []
            for pv in s.pvs:
                ps = pv["spec"]
                required = (ps.get("nodeAffinity") or {}).get("required")
                if (pv["status"]["phase"] == "Available" and not ps.get("claimRef")
                        and ps.get("storageClassName") == sc["metadata"]["name"]
                        and quantity(ps["capacity"]["storage"]) >= want
                        and set(spec["accessModes"]) <= set(ps["accessModes"])
                        and (required is None or node_selector_matches(required, n))):
                    opts.append(pv["metadata"]["name"])
            if sc["provisioner"] != NO_PROVISIONER:
                opts.append(None)
            options.append(opts)
        if ok and options:
            ok = any(len([x for x in combo if x is not None]) == len({x for x in combo if x is not None})
                     for combo in itertools.product(*options))
        out[n["metadata"]["name"]] = ok
    return out


def reference(s: Scenario) -> set[str]:
    """The nodes kube-scheduler's filters accept for the incoming pod."""
    node_by_name = {n["metadata"]["name"]: n for n in s.nodes}
    node_of = {q["metadata"]["name"]: node_by_name[q["spec"]["nodeName"]] for q in s.existing}
    ns_labels = {ns["metadata"]["name"]: labels_of(ns) for ns in s.namespaces}
    volumes = ref_volumes(s)
    if volumes is None:
        return set()
    out = set()
    for n in s.nodes:
        name = n["metadata"]["name"]
        on_node = [q for q in s.existing if q["spec"]["nodeName"] == name]
        if (node_affinity_ok(s.incoming, n) and taints_ok(s.incoming, n)
                and ref_ports_ok(s.incoming, on_node) and ref_resources_ok(s.incoming, n, on_node)
                and volumes[name]
                and ref_spread_ok(s, n, node_of)
                and ref_pod_affinity_ok(s, n, node_of, ns_labels)):
            out.add(name)
    return out


# --- Tessera -----------------------------------------------------------------------------------------

def session_for(s: Scenario) -> alloc.Session:
    cluster = alloc.Cluster.build([alloc.parse_node(n) for n in s.nodes],
                                  [alloc.parse_namespace(n) for n in s.namespaces], [], [])
    session = alloc.Session(cluster)
    for sc in s.classes:
        session.volumes.add_storage_class(parse_storage_class(sc))
    for pv in s.pvs:
        session.volumes.add_pv(parse_persistent_volume(pv))
    for pvc in s.pvcs:
        session.volumes.add_pvc(parse_persistent_volume_claim(pvc))
    for q in s.existing:
        session.pods.place(alloc.parse_pod(q), q["spec"]["nodeName"])
    return session


def names_of(s: Scenario) -> list[str]:
    return [n["metadata"]["name"] for n in s.nodes]


# --- generators ------------------------------------------------------------------------------------

label_maps = st.fixed_dictionaries({}, optional={"app": st.sampled_from(APPS), "tier": st.sampled_from(TIERS)})
# Mostly app=x, the label spread selectors ask for most: counts that reach maxSkew.
spread_labels = st.fixed_dictionaries({"app": st.sampled_from(["x", "x", "x", "y"])}, optional={"tier": st.sampled_from(TIERS)})


@st.composite
def match_expressions(draw: st.DrawFn) -> list[Obj]:
    out = []
    for _ in range(draw(st.integers(1, 2))):
        key = draw(st.sampled_from(["app", "tier"]))
        values = APPS if key == "app" else TIERS
        op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        e: Obj = {"key": key, "operator": op}
        if op in ("In", "NotIn"):
            e["values"] = sorted(draw(st.sets(st.sampled_from(values), min_size=1)))
        out.append(e)
    return out


@st.composite
def label_selectors(draw: st.DrawFn) -> Obj | None:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return None
    if kind == 1:
        return {}
    sel: Obj = {}
    if kind in (2, 3, 4, 5, 9):
        sel["matchLabels"] = draw(label_maps.filter(bool))
    if kind in (6, 7, 8, 9):
        sel["matchExpressions"] = draw(match_expressions())
    return sel


@st.composite
def affinity_terms(draw: st.DrawFn) -> Obj:
    t: Obj = {"topologyKey": draw(st.sampled_from(TOPOLOGY_KEYS))}
    sel = draw(label_selectors())
    if sel is not None:
        t["labelSelector"] = sel
    variant = draw(st.integers(0, 7))
    if variant == 1:
        t["namespaces"] = []
    elif variant == 2:
        t["namespaces"] = sorted(draw(st.sets(st.sampled_from([*NAMESPACES, "ghost"]), min_size=1)))
    elif variant == 3:
        t["namespaceSelector"] = {}
    elif variant == 4:
        t["namespaceSelector"] = {"matchLabels": {"env": draw(st.sampled_from(["prod", "dev"]))}}
    elif variant == 5:
        t["namespaceSelector"] = {"matchExpressions": [{"key": "env", "operator": draw(st.sampled_from(["Exists", "DoesNotExist"]))}]}
    elif variant == 6:
        t["namespaces"] = [draw(st.sampled_from(NAMESPACES))]
        t["namespaceSelector"] = {"matchLabels": {"env": draw(st.sampled_from(["prod", "dev"]))}}
    return t


@st.composite
def affinities(draw: st.DrawFn, sizes: Sequence[int] = (0, 0, 0, 1, 1, 2)) -> Obj:
    """Pod affinity and anti-affinity: required terms (as many as drawn from `sizes`) and sometimes a preferred one."""
    out: Obj = {}
    for kind in ("podAffinity", "podAntiAffinity"):
        part: Obj = {}
        req = [draw(affinity_terms()) for _ in range(draw(st.sampled_from(sizes)))]
        if req:
            part["requiredDuringSchedulingIgnoredDuringExecution"] = req
        if draw(st.integers(0, 3)) == 0:
            part["preferredDuringSchedulingIgnoredDuringExecution"] = [
                {"weight": draw(st.integers(1, 100)), "podAffinityTerm": draw(affinity_terms())}]
        if part:
            out[kind] = part
    return out


@st.composite
def containers(draw: st.DrawFn, ports: bool, light: bool = False, port_odds: int = 3) -> list[Obj]:
    """1-2 containers with requests; `light`: small cpu requests only (leave NodeResourcesFit out of the way)."""
    out = []
    for i in range(draw(st.sampled_from([1, 1, 2]))):
        c: Obj = {"name": f"c{i}", "image": "busybox"}
        if light:
            req = draw(st.fixed_dictionaries({}, optional={"cpu": st.sampled_from(["100m", "250m"])}))
        else:
            req = draw(st.fixed_dictionaries({}, optional={"cpu": st.sampled_from(["100m", "250m", "500m", "1", "2"]),
                                                           "memory": st.sampled_from(["256Mi", "512Mi", "2Gi"])}))
        if req:
            c["resources"] = {"requests": req}
        if ports and draw(st.integers(1, port_odds)) == 1:
            port: Obj = {"containerPort": 80, "hostPort": draw(st.sampled_from([8080, 8080, 9090]))}
            proto = draw(st.sampled_from([None, "TCP", "UDP"]))
            if proto is not None:
                port["protocol"] = proto
            ip = draw(st.sampled_from([None, "0.0.0.0", "10.0.0.1", "10.0.0.2"]))
            if ip is not None:
                port["hostIP"] = ip
            c["ports"] = [port]
        out.append(c)
    return out


TAINTS: list[Obj] = [
    {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
    {"key": "maint", "effect": "NoExecute"},
    {"key": "soft", "effect": "PreferNoSchedule"},
]
TOLERATIONS: list[Obj] = [
    {"key": "dedicated", "operator": "Equal", "value": "gpu"},
    {"key": "dedicated", "operator": "Equal", "value": "cpu"},
    {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"},
    {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "maint", "operator": "Exists"},
    {"operator": "Exists"},
]


@st.composite
def nodes(draw: st.DrawFn, min_size: int = 2, roomy: bool = False) -> list[Obj]:
    """2-6 nodes; `roomy`: allocatable no generated pod set can exhaust."""
    out = []
    for i in range(draw(st.integers(min_size, 6))):
        name = f"n{i}"
        labels = {HOST: name}
        if draw(st.integers(0, 4)):
            labels[ZONE] = draw(st.sampled_from(ZONES))
        if draw(st.integers(0, 2)):
            labels[RACK] = draw(st.sampled_from(RACKS))
        spec: Obj = {}
        if draw(st.integers(0, 3)) == 0:
            spec["taints"] = [draw(st.sampled_from(TAINTS))]
        n = node(name, labels, **spec)
        if roomy:
            n["status"] = {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"}}
        else:
            n["status"] = {"allocatable": {"cpu": draw(st.sampled_from(["1", "2", "4"])),
                                           "memory": draw(st.sampled_from(["1Gi", "4Gi"])),
                                           "pods": draw(st.sampled_from(["2", "3", "110", "110"]))}}
        out.append(n)
    return out


@st.composite
def namespaces(draw: st.DrawFn, two: bool = False) -> list[Obj]:
    names = ["default"] + (["team"] if two or draw(st.booleans()) else [])
    out = []
    for name in names:
        env = draw(st.sampled_from([None, "prod", "dev"]))
        out.append(namespace(name, {"env": env} if env else {}))
    return out


@st.composite
def existing_pods(draw: st.DrawFn, ns: list[str], node_names: list[str], max_size: int = 8,
                  focus: str = "mixed") -> list[Obj]:
    """Placed pods. Focused on spread, affinity or volumes: no host ports, small requests, more pods
    being deleted; on spread, no affinities. Focused on fit: more host ports, no affinities."""
    focused = focus != "mixed"
    light = focus in LIGHT
    out = []
    for i in range(draw(st.integers(3 if focused else 0, max_size + 2 if focus == "spread" else max_size))):
        spec: Obj = {"nodeName": draw(st.sampled_from(node_names)),
                     "containers": draw(containers(ports=not light, light=light, port_odds=2 if focus == "fit" else 3))}
        if focus in ("mixed", "affinity", "volumes") and draw(st.integers(0, 1 if focus == "affinity" else 2)) == 0:
            a = draw(affinities())
            if a:
                spec["affinity"] = a
        p = pod(f"e{i}", namespace=draw(st.sampled_from(ns)), **spec)
        p["metadata"]["labels"] = draw(spread_labels if focus == "spread" else label_maps)
        if draw(st.integers(0, 3 if focused else 5)) == 0:
            p["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
        out.append(p)
    return out


def node_requirement(draw: st.DrawFn) -> Obj:
    key = draw(st.sampled_from(TOPOLOGY_KEYS))
    values = {HOST: ("n0", "n1", "n2"), ZONE: ZONES, RACK: RACKS}[key]
    op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
    e: Obj = {"key": key, "operator": op}
    if op in ("In", "NotIn"):
        e["values"] = sorted(draw(st.sets(st.sampled_from(values), min_size=1)))
    return e


@st.composite
def node_selector_terms(draw: st.DrawFn) -> Obj:
    terms = []
    for _ in range(draw(st.integers(1, 2))):
        term: Obj = {}
        if draw(st.integers(0, 4)):
            term["matchExpressions"] = [node_requirement(draw) for _ in range(draw(st.integers(1, 2)))]
        if draw(st.integers(0, 4)) == 0 or not term:
            term["matchFields"] = [{"key": "metadata.name", "operator": draw(st.sampled_from(["In", "NotIn"])),
                                    "values": sorted(draw(st.sets(st.sampled_from(["n0", "n1", "n2", "n3"]), min_size=1)))}]
        terms.append(term)
    return {"nodeSelectorTerms": terms}


@st.composite
def spread_constraints(draw: st.DrawFn, sizes: Sequence[int] = (0, 1, 2)) -> list[Obj]:
    out = []
    for key in draw(st.permutations(TOPOLOGY_KEYS))[:draw(st.sampled_from(sizes))]:
        c: Obj = {"maxSkew": draw(st.sampled_from([1, 1, 2])), "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule"}
        sel = draw(st.one_of(label_selectors(), st.just({"matchLabels": {"app": "x"}})))
        if sel is not None:
            c["labelSelector"] = sel
        if draw(st.integers(0, 2)) == 0:
            c["minDomains"] = draw(st.integers(1, 4))
        for policy in ("nodeAffinityPolicy", "nodeTaintsPolicy"):
            v = draw(st.sampled_from([None, "Honor", "Ignore"]))
            if v is not None:
                c[policy] = v
        out.append(c)
    if draw(st.integers(0, 5)) == 0:  # a soft constraint, which no filter looks at
        out.append({"maxSkew": 1, "topologyKey": draw(st.sampled_from(TOPOLOGY_KEYS)), "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app": "x"}}})
    return out


STORAGE_CLASSES: list[Obj] = [
    {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local"},
     "provisioner": NO_PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer"},
    {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "dynamic"},
     "provisioner": "csi.example.com", "volumeBindingMode": "WaitForFirstConsumer"},
    {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "immediate"},
     "provisioner": "csi.example.com", "volumeBindingMode": "Immediate"},
]
ACCESS_MODE_SETS = (["ReadWriteOnce"], ["ReadWriteOnce", "ReadOnlyMany"], ["ReadWriteMany"])


def pv_node_affinity(draw: st.DrawFn) -> Obj | None:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return None
    if kind == 1:
        expr = {"key": ZONE, "operator": "In", "values": sorted(draw(st.sets(st.sampled_from(ZONES), min_size=1)))}
    elif kind == 2:
        expr = {"key": HOST, "operator": "In", "values": [draw(st.sampled_from(["n0", "n1", "n2", "n3"]))]}
    else:
        expr = {"key": RACK, "operator": "In", "values": [draw(st.sampled_from(RACKS))]}
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [expr]}]}}


def make_pv(name: str, storage_class: str, capacity: str, modes: list[str], affinity: Obj | None,
            claim: tuple[str, str] | None) -> Obj:
    spec: Obj = {"storageClassName": storage_class, "capacity": {"storage": capacity}, "accessModes": modes}
    if affinity is not None:
        spec["nodeAffinity"] = affinity
    if claim is not None:
        spec["claimRef"] = {"namespace": claim[0], "name": claim[1]}
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name}, "spec": spec,
            "status": {"phase": "Bound" if claim is not None else "Available"}}


def make_pvc(ns: str, name: str, spec: Obj, bound: bool) -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": ns}, "spec": spec,
            "status": {"phase": "Bound" if bound else "Pending"}}


@st.composite
def volumes(draw: st.DrawFn, ns: str, focus: str = "mixed") -> tuple[list[Obj], list[Obj]]:
    """PersistentVolumes and the incoming pod's claims (0-2). Focused on volumes: 1-2 claims, mostly
    unbound and of the class that does not provision, and few roomy volumes for them to share."""
    focused = focus == "volumes"
    n_claims = draw(st.sampled_from([1, 2, 2] if focused else [0, 0, 0, 0, 0, 0, 1, 1, 2]))
    if not n_claims:
        return [], []
    pvs = []
    for i in range(draw(st.integers(1, 3) if focused else st.integers(0, 5))):
        claimed = draw(st.integers(0, 4)) == 0
        pvs.append(make_pv(f"pv{i}", draw(st.sampled_from(["local", "local", "local", "dynamic"] if focused else ["local", "dynamic"])),
                           draw(st.sampled_from(["5Gi", "10Gi"] if focused else ["1Gi", "5Gi", "10Gi"])),
                           list(draw(st.sampled_from(ACCESS_MODE_SETS))), pv_node_affinity(draw),
                           ("default", "someone-else") if claimed else None))
    pvcs = []
    for i in range(n_claims):
        name = f"data{i}"
        kind = draw(st.integers(1 if focused else 0, 9))
        if kind <= 2:  # bound to its own volume
            pv_name = f"bound-{name}"
            pvs.append(make_pv(pv_name, "local", "5Gi", ["ReadWriteOnce"], pv_node_affinity(draw), (ns, name)))
            spec: Obj = {"storageClassName": "local", "volumeName": pv_name, "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "5Gi"}}}
            pvcs.append(make_pvc(ns, name, spec, bound=True))
        else:
            sc = "immediate" if kind == 9 else draw(st.sampled_from(["local", "local", "local", "dynamic"]))
            modes = [["ReadWriteOnce"], ["ReadWriteOnce"], ["ReadOnlyMany"], ["ReadWriteMany"]]
            spec = {"storageClassName": sc, "accessModes": list(draw(st.sampled_from(modes))),
                    "resources": {"requests": {"storage": draw(st.sampled_from(["1Gi", "4Gi", "8Gi"]))}}}
            pvcs.append(make_pvc(ns, name, spec, bound=False))
    return pvs, pvcs


FOCI = ("mixed", "mixed", "spread", "spread", "affinity", "affinity", "volumes", "fit")


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A cluster and an incoming pod. Mixed: every rule at once. Focused on spread, affinity or
    volumes: that rule always, roomy nodes and the other rules left out, so that the rule's fine
    print decides often. Focused on fit: requests and host ports only."""
    focus = draw(st.sampled_from(FOCI))
    light = focus in LIGHT
    ns_objs = draw(namespaces(two=focus == "affinity"))
    ns = [o["metadata"]["name"] for o in ns_objs]
    node_objs = draw(nodes(roomy=light))
    existing = draw(existing_pods(ns, [n["metadata"]["name"] for n in node_objs], focus=focus))
    pns = draw(st.sampled_from(ns))
    spec: Obj = {"containers": draw(containers(ports=not light, light=light, port_odds=1 if focus == "fit" else 2))}
    if focus in ("mixed", "spread") and draw(st.integers(0, 4 if focus == "mixed" else 2)) == 0:
        spec["nodeSelector"] = draw(st.sampled_from([{ZONE: "a"}, {RACK: "r1"}, {HOST: "n0"}, {ZONE: "b", RACK: "r2"}]))
    affinity: Obj = {}
    if focus in ("mixed", "spread") and draw(st.integers(0, 4 if focus == "mixed" else 3)) == 0:
        affinity["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": draw(node_selector_terms())}
    if focus == "affinity" or (focus == "mixed" and draw(st.integers(0, 2))):
        affinity.update(draw(affinities((0, 1, 2, 2) if focus == "affinity" else (0, 0, 0, 1, 1, 2))))
    if affinity:
        spec["affinity"] = affinity
    tolerations = draw(st.lists(st.sampled_from(TOLERATIONS), max_size=2, unique_by=repr)) if draw(st.integers(0, 2)) else []
    if tolerations:
        spec["tolerations"] = tolerations
    if focus == "spread" or (focus == "mixed" and draw(st.integers(0, 2))):
        spread = draw(spread_constraints((1, 2, 2) if focus == "spread" else (0, 1, 2)))
        if spread:
            spec["topologySpreadConstraints"] = spread
    pvs, pvcs = draw(volumes(pns, focus)) if focus in ("mixed", "volumes") else ([], [])
    if pvcs:
        spec["volumes"] = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c["metadata"]["name"]}}
                           for i, c in enumerate(pvcs)]
    incoming = pod("incoming", namespace=pns, **spec)
    incoming["metadata"]["labels"] = draw(spread_labels if focus == "spread" else label_maps)
    return Scenario(node_objs, ns_objs, existing, incoming, STORAGE_CLASSES if pvcs else [], pvs, pvcs)


# --- properties --------------------------------------------------------------------------------------

def explain(s: Scenario) -> str:
    return json.dumps({"nodes": s.nodes, "namespaces": s.namespaces, "existing": s.existing, "incoming": s.incoming,
                       "pvs": s.pvs, "pvcs": s.pvcs}, indent=1)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_filter_matches_the_reference(s: Scenario) -> None:
    session = session_for(s)
    res = session.filter(alloc.parse_pod(s.incoming), names_of(s))
    want = reference(s)
    assert set(res.ok) == want, (
        f"Tessera {sorted(res.ok)} != reference {sorted(want)}; Tessera's reasons: "
        f"{ {**res.failed, **res.unresolvable} }\n{explain(s)}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_decide_places_exactly_when_the_reference_has_a_node(s: Scenario) -> None:
    session = session_for(s)
    d = session.decide(alloc.parse_pod(s.incoming))
    want = reference(s)
    if want:
        assert isinstance(d, alloc.Placed), f"reference allows {sorted(want)}, Tessera: {getattr(d, 'reason', d)}\n{explain(s)}"
        assert d.node in want
    else:
        assert isinstance(d, alloc.Unschedulable), f"reference allows no node, Tessera chose {getattr(d, 'node', d)}\n{explain(s)}"


@dataclass
class Run:
    base: Scenario  # nodes, namespaces and the pods placed before the run (within capacity)
    pods: list[Obj]  # identical pods, scheduled in turn
    rule: str  # "anti" (mutual anti-affinity on the hostname) or "spread" (zones)
    max_skew: int = 1


@st.composite
def runs(draw: st.DrawFn) -> Run:
    ns_objs = [namespace("default")]
    node_objs = draw(nodes())
    by_name = {n["metadata"]["name"]: n for n in node_objs}
    placed: list[Obj] = []
    for p in draw(existing_pods(["default"], list(by_name), max_size=5)):
        n = by_name[p["spec"]["nodeName"]]
        if ref_resources_ok(p, n, [q for q in placed if q["spec"]["nodeName"] == p["spec"]["nodeName"]]):
            placed.append(p)
    rule = draw(st.sampled_from(["anti", "spread"]))
    skew = draw(st.integers(1, 2))
    spec: Obj = {"containers": [{"name": "main", "image": "busybox",
                                 "resources": {"requests": {"cpu": draw(st.sampled_from(["100m", "250m", "500m", "1"]))}}}]}
    gang_sel = {"matchLabels": {"app": "gang"}}
    if rule == "anti":
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": gang_sel, "topologyKey": HOST}]}}
    else:
        c: Obj = {"maxSkew": skew, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": gang_sel}
        if draw(st.booleans()):
            c["minDomains"] = draw(st.integers(1, 4))
        spec["topologySpreadConstraints"] = [c]
    pods = []
    for i in range(draw(st.integers(3, 8))):
        p = pod(f"g{i}", **spec)
        p["metadata"]["labels"] = {"app": "gang"}
        pods.append(p)
    return Run(Scenario(node_objs, ns_objs, placed, pods[0]), pods, rule, skew)


def cpu_of(p: Obj) -> Fraction:
    return requests_of(p).get("cpu", Fraction(0))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_runs_of_identical_pods_keep_the_rule_and_capacity(run: Run) -> None:
    s = run.base
    session = session_for(s)
    node_by_name = {n["metadata"]["name"]: n for n in s.nodes}
    zoned = {n["metadata"]["name"]: labels_of(n)[ZONE] for n in s.nodes if ZONE in labels_of(n)}
    domains = set(zoned.values())
    everyone = list(s.existing)  # every pod on a node, as placed
    gang_nodes: list[str] = []
    for p in run.pods:
        want = reference(Scenario(s.nodes, s.namespaces, everyone, p))
        d = session.schedule(alloc.parse_pod(p))
        if isinstance(d, alloc.Placed):
            assert d.node in want, f"{p['metadata']['name']} went to {d.node}, reference allows {sorted(want)}\n{explain(s)}"
            everyone.append({**p, "spec": {**p["spec"], "nodeName": d.node}})
            gang_nodes.append(d.node)
        else:
            assert not want, f"{p['metadata']['name']} refused ({d.reason}), reference allows {sorted(want)}\n{explain(s)}"
        # The rule between the run's pods.
        if run.rule == "anti":
            assert len(set(gang_nodes)) == len(gang_nodes), gang_nodes
        else:
            assert all(n in zoned for n in gang_nodes), gang_nodes
            per_zone = Counter({z: 0 for z in domains})
            per_zone.update(zoned[n] for n in gang_nodes)
            if per_zone:
                assert max(per_zone.values()) - min(per_zone.values()) <= run.max_skew, per_zone
        # No node overcommitted, in cpu or in pods.
        for name, n in node_by_name.items():
            here = [q for q in everyone if q["spec"]["nodeName"] == name]
            allocatable = n["status"]["allocatable"]
            assert len(here) <= quantity(allocatable["pods"]), (name, len(here))
            assert sum((cpu_of(q) for q in here), Fraction(0)) <= quantity(allocatable["cpu"]), name


# --- fixed cases -------------------------------------------------------------------------------------
# A few hand-written scenarios pin the reference itself to the documented semantics, so that a
# property passing is not two implementations agreeing on the same mistake.

def _nodes(*specs: tuple[str, Mapping[str, str]]) -> list[Obj]:
    out = []
    for name, labels in specs:
        n = node(name, {HOST: name, **labels})
        n["status"] = {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "110"}}
        out.append(n)
    return out


def _placed(name: str, on: str, labels: Mapping[str, str], ns: str = "default", **spec: Any) -> Obj:
    p = pod(name, namespace=ns, nodeName=on, **spec)
    p["metadata"]["labels"] = dict(labels)
    return p


def _incoming(labels: Mapping[str, str], ns: str = "default", **spec: Any) -> Obj:
    p = pod("incoming", namespace=ns, **spec)
    p["metadata"]["labels"] = dict(labels)
    return p


def _check(s: Scenario, want: Iterable[str]) -> None:
    assert reference(s) == set(want)
    assert set(session_for(s).filter(alloc.parse_pod(s.incoming), names_of(s)).ok) == set(want)


def test_first_pod_of_a_self_affine_group_goes_wherever_its_keys_exist() -> None:
    cluster = _nodes(("n0", {ZONE: "a"}), ("n1", {}))
    term = {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": ZONE}
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    _check(Scenario(cluster, [namespace("default")], [], _incoming({"app": "x"}, affinity=aff)), ["n0"])
    _check(Scenario(cluster, [namespace("default")], [], _incoming({"app": "y"}, affinity=aff)), [])


def test_spread_counts_the_global_minimum_and_min_domains() -> None:
    cluster = _nodes(("n0", {ZONE: "a"}), ("n1", {ZONE: "b"}), ("n2", {}))
    sel = {"matchLabels": {"app": "x"}}
    existing = [_placed("e0", "n0", {"app": "x"})]
    c = {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": sel}
    _check(Scenario(cluster, [namespace("default")], existing, _incoming({"app": "x"}, topologySpreadConstraints=[c])), ["n1"])
    c3 = {**c, "minDomains": 3}  # two domains, fewer than three: the minimum is 0
    _check(Scenario(cluster, [namespace("default")], existing, _incoming({"app": "x"}, topologySpreadConstraints=[c3])), ["n1"])
    c2 = {**c, "maxSkew": 2, "minDomains": 3}
    _check(Scenario(cluster, [namespace("default")], existing, _incoming({"app": "x"}, topologySpreadConstraints=[c2])), ["n0", "n1"])
    empty = {**c, "labelSelector": {}}  # counts no placed pod, matches the pod itself
    _check(Scenario(cluster, [namespace("default")], existing, _incoming({"app": "y"}, topologySpreadConstraints=[empty])),
           ["n0", "n1"])


def test_existing_pods_anti_affinity_is_symmetric() -> None:
    cluster = _nodes(("n0", {ZONE: "a"}), ("n1", {ZONE: "a"}), ("n2", {ZONE: "b"}))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": ZONE, "namespaceSelector": {}}]}}
    existing = [_placed("e0", "n0", {}, ns="team", affinity=anti)]
    spaces = [namespace("default"), namespace("team")]
    _check(Scenario(cluster, spaces, existing, _incoming({"app": "x"})), ["n2"])
    _check(Scenario(cluster, spaces, existing, _incoming({"app": "y"})), ["n0", "n1", "n2"])


def test_wait_for_first_consumer_claims_take_distinct_volumes() -> None:
    cluster = _nodes(("n0", {ZONE: "a"}), ("n1", {ZONE: "b"}))
    zone_a = {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["a"]}]}]}}
    pvs = [make_pv("pv0", "local", "5Gi", ["ReadWriteOnce"], zone_a, None),
           make_pv("pv1", "local", "5Gi", ["ReadWriteOnce"], None, None)]
    spec = {"storageClassName": "local", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    pvcs = [make_pvc("default", "d0", spec, bound=False), make_pvc("default", "d1", spec, bound=False)]
    vols = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": f"d{i}"}} for i in range(2)]
    _check(Scenario(cluster, [namespace("default")], [], _incoming({}, volumes=vols), STORAGE_CLASSES, pvs, pvcs), ["n0"])


def test_spread_counts_only_nodes_carrying_every_hard_key() -> None:
    cluster = _nodes(("n0", {ZONE: "a", RACK: "r1"}), ("n1", {ZONE: "a"}), ("n2", {ZONE: "b", RACK: "r2"}))
    existing = [_placed("e0", "n1", {"app": "x"}), _placed("e1", "n1", {"app": "x"})]
    sel = {"matchLabels": {"app": "x"}}
    zone = {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": sel}
    rack = {**zone, "topologyKey": RACK}
    spaces = [namespace("default")]
    # n1 has no rack: with both constraints its pods count for neither, and it is no candidate.
    _check(Scenario(cluster, spaces, existing, _incoming({"app": "x"}, topologySpreadConstraints=[zone, rack])), ["n0", "n2"])
    _check(Scenario(cluster, spaces, existing, _incoming({"app": "x"}, topologySpreadConstraints=[zone])), ["n2"])


def test_pod_affinity_looks_at_pods_matching_every_term() -> None:
    cluster = _nodes(("n0", {ZONE: "a", RACK: "r1"}), ("n1", {ZONE: "a", RACK: "r2"}), ("n2", {ZONE: "b", RACK: "r1"}))
    terms = [{"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": ZONE},
             {"labelSelector": {"matchLabels": {"tier": "1"}}, "topologyKey": RACK}]
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": terms}}
    spaces = [namespace("default")]
    existing = [_placed("e0", "n0", {"app": "x"}), _placed("e1", "n2", {"tier": "1"})]
    _check(Scenario(cluster, spaces, existing, _incoming({}, affinity=aff)), [])
    both = [*existing, _placed("e2", "n1", {"app": "x", "tier": "1"})]
    _check(Scenario(cluster, spaces, both, _incoming({}, affinity=aff)), ["n1"])


def test_resource_fit_counts_every_placed_pod_and_only_requested_resources() -> None:
    cluster = _nodes(("n0", {}), ("n1", {}), ("n2", {}), ("n3", {}))
    for n in cluster:
        n["status"]["allocatable"] = {"cpu": "1", "memory": "1Gi", "pods": "2"}

    def requesting(cpu: str) -> list[Obj]:
        return [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]

    deleting = _placed("e0", "n0", {}, containers=requesting("1"))
    deleting["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"  # still holds its resources
    existing = [deleting, _placed("e1", "n1", {}), _placed("e2", "n1", {}), _placed("e3", "n2", {}, containers=requesting("2"))]
    spaces = [namespace("default")]
    _check(Scenario(cluster, spaces, existing, _incoming({}, containers=requesting("500m"))), ["n3"])
    memory = [{"name": "main", "image": "busybox", "resources": {"requests": {"memory": "512Mi"}}}]
    # No cpu asked for: an overcommitted cpu does not matter; the pod count still does.
    _check(Scenario(cluster, spaces, existing, _incoming({}, containers=memory)), ["n0", "n2", "n3"])


def test_host_ports_conflict_per_protocol_and_address() -> None:
    cluster = _nodes(("n0", {}), ("n1", {}), ("n2", {}))

    def serving(**port: Any) -> list[Obj]:
        return [{"name": "main", "image": "busybox", "ports": [{"containerPort": 80, "hostPort": 8080, **port}]}]

    existing = [_placed("e0", "n0", {}, containers=serving(hostIP="10.0.0.1")),
                _placed("e1", "n1", {}, containers=serving(protocol="UDP")),
                _placed("e2", "n2", {}, containers=serving(hostIP="0.0.0.0"))]
    spaces = [namespace("default")]
    _check(Scenario(cluster, spaces, existing, _incoming({}, containers=serving(hostIP="10.0.0.2"))), ["n0", "n1"])
    _check(Scenario(cluster, spaces, existing, _incoming({}, containers=serving())), ["n1"])


def test_taints_block_no_schedule_and_no_execute() -> None:
    cluster = _nodes(("n0", {}), ("n1", {}), ("n2", {}))
    for n, taint in zip(cluster, TAINTS, strict=True):
        n["spec"] = {"taints": [taint]}
    spaces = [namespace("default")]
    _check(Scenario(cluster, spaces, [], _incoming({})), ["n2"])
    wrong_effect = [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]
    _check(Scenario(cluster, spaces, [], _incoming({}, tolerations=wrong_effect)), ["n2"])
    _check(Scenario(cluster, spaces, [], _incoming({}, tolerations=[{"operator": "Exists"}])), ["n0", "n1", "n2"])


def test_an_unbound_immediate_claim_fits_nowhere_and_a_bound_one_follows_its_volume() -> None:
    cluster = _nodes(("n0", {ZONE: "a"}), ("n1", {ZONE: "b"}))
    zone_b = {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["b"]}]}]}}
    pvs = [make_pv("pv0", "local", "5Gi", ["ReadWriteOnce"], zone_b, ("default", "bound"))]
    rwo = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}
    pvcs = [make_pvc("default", "bound", {"storageClassName": "local", "volumeName": "pv0", **rwo}, bound=True),
            make_pvc("default", "waiting", {"storageClassName": "immediate", **rwo}, bound=False)]
    spaces = [namespace("default")]

    def using(*claims: str) -> list[Obj]:
        return [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]

    _check(Scenario(cluster, spaces, [], _incoming({}, volumes=using("bound")), STORAGE_CLASSES, pvs, pvcs), ["n1"])
    _check(Scenario(cluster, spaces, [], _incoming({}, volumes=using("bound", "waiting")), STORAGE_CLASSES, pvs, pvcs), [])


def test_spread_node_inclusion_policies_decide_which_domains_count() -> None:
    cluster = _nodes(("n0", {ZONE: "a", RACK: "r2"}), ("n1", {ZONE: "b", RACK: "r1"}))
    existing = [_placed("e0", "n1", {"app": "x"})]
    spread = {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "x"}}}
    spaces = [namespace("default")]
    # nodeAffinityPolicy Honor (the default): n0, which the pod's node selector refuses, is no domain.
    rack = {RACK: "r1"}
    _check(Scenario(cluster, spaces, existing, _incoming({"app": "x"}, topologySpreadConstraints=[spread], nodeSelector=rack)),
           ["n1"])
    ignore = {**spread, "nodeAffinityPolicy": "Ignore"}
    _check(Scenario(cluster, spaces, existing, _incoming({"app": "x"}, topologySpreadConstraints=[ignore], nodeSelector=rack)), [])
    # nodeTaintsPolicy Ignore (the default): n0's untolerated taint leaves zone a a domain, with no pods.
    cluster[0]["spec"] = {"taints": [TAINTS[0]]}
    _check(Scenario(cluster, spaces, existing, _incoming({"app": "x"}, topologySpreadConstraints=[spread])), [])
    honor = {**spread, "nodeTaintsPolicy": "Honor"}
    _check(Scenario(cluster, spaces, existing, _incoming({"app": "x"}, topologySpreadConstraints=[honor])), ["n1"])
