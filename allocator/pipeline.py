"""The placement rules beyond devices, as kube-scheduler's default profile applies them: one
filter-and-score pipeline that `simulate`, the secondary scheduler and the extender all run
(through `Session`).

Filters, in kube-scheduler's order (the static ones are cached per pod shape in `Session`):

  static:   NodeName, NodeUnschedulable, NodeAffinity (required), TaintToleration
  dynamic:  NodePorts, NodeResourcesFit, VolumeRestrictions / VolumeBinding / VolumeZone,
            PodTopologySpread (DoNotSchedule), InterPodAffinity (required terms, both ways)
  devices:  DynamicResources (Tessera's allocator, in `placement.py`)

Scores (each normalised to 0-100 over the feasible nodes, then weighted as in the default
profile): TaintToleration (PreferNoSchedule) x3, NodeAffinity (preferred) x2,
PodTopologySpread (ScheduleAnyway) x2, InterPodAffinity (preferred, and placed pods' terms)
x2. The sum orders nodes first; Tessera's device and topology order breaks ties (see the
README's table).

`Context` is what kube-scheduler computes in PreFilter: built once per pod per decision from
the `PodIndex` (counts per topology domain, placed pods' anti-affinity by domain), it answers
each node in O(constraints).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from .labels import LabelSelector
from .model import DeviceClass, Namespace, Pod
from .nodeselector import Node, Taint, Toleration, untolerated
from .pods import Matcher, OwnerMatch, PodIndex, matches
from .podspec import HOSTNAME, AffinityTerm, SpreadConstraint

_EMPTY: Mapping[str, int] = {}
NATIVE_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage", "pods"})
MAX_NODE_SCORE = 100
NO_DOMAINS = 2**31 - 1  # the global minimum when no node counts: every skew passes, as upstream
WEIGHT_TAINTS = 3
WEIGHT_NODE_AFFINITY = 2
WEIGHT_SPREAD = 2
WEIGHT_POD_AFFINITY = 2

SPREAD_MISMATCH = "node(s) didn't match pod topology spread constraints"
SPREAD_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
AFFINITY_MISMATCH = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_MISMATCH = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
PORTS_IN_USE = "node(s) didn't have free ports for the requested pod ports"
VOLUME_LIMITS_NOTE = "CSI per-node volume limits are not checked"


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    resolvable: bool = True  # whether removing pods (preemption) could make the node fit


# --- NodeResourcesFit ----------------------------------------------------------------------------

def resource_fit(pod: Pod, node: Node, pods: PodIndex, classes: Mapping[str, DeviceClass]) -> str | None:
    """Every resource the pod requests, and the pod count, against the node's allocatable minus
    the pods placed there. A node that reports no allocatable at all is not checked; one that
    reports some but not a native resource is assumed to have enough of it; an extended
    resource (a device plugin's `nvidia.com/gpu`, hugepages) it does not report, it has none of."""
    alloc = node.allocatable
    if not alloc:
        return None
    used = pods.usage.get(node.name, _EMPTY)
    cap = alloc.get("pods")
    if cap is not None and used.get("pods", 0) + 1000 > cap:
        return "node(s) had too many pods"
    for res, want in pod.requests.items():
        cap = alloc.get(res)
        if cap is None:
            if res in NATIVE_RESOURCES:
                continue
            mapped = dra_backed(res, classes)
            if mapped is not None:
                return (f"node(s) had no {res}: DeviceClass {mapped} offers it through DRA (extendedResourceName), "
                        "which Tessera does not allocate; ask for the device with a ResourceClaim instead")
            return f"node(s) had no {res}"
        if used.get(res, 0) + want > cap:
            return f"node(s) had insufficient {res}"
    return None


def dra_backed(resource: str, classes: Mapping[str, DeviceClass]) -> str | None:
    """The DeviceClass that maps `resource` to DRA devices (DRAExtendedResource), if any."""
    prefix = "deviceclass.resource.kubernetes.io/"
    implicit = resource[len(prefix):] if resource.startswith(prefix) else None
    for name in sorted(classes):
        if name == implicit or classes[name].extended_resource_name == resource:
            return name
    return None


# --- the per-decision context ----------------------------------------------------------------------

def _count(rejected: Counter[str], r: Rejection) -> bool:
    rejected[r.reason] += 1
    return False


# The nodes of a node list that report allocatable (the only ones NodeResourcesFit can refuse),
# for the last few lists asked about. Node lists are built once per cluster and pod shape; each
# entry holds its list (so the id it is found by stays that list's) with its length and ends, so
# a list changed in place since is looked at afresh.
_REPORTING_LISTS = 8
_reporting_cache: dict[int, tuple[list[Node], int, Node | None, Node | None, list[Node]]] = {}


def _reporting(nodes: list[Node]) -> list[Node]:
    hit = _reporting_cache.get(id(nodes))
    first, last = (nodes[0], nodes[-1]) if nodes else (None, None)
    if hit is not None and hit[0] is nodes and hit[1] == len(nodes) and hit[2] is first and hit[3] is last:
        return hit[4]
    checked = [n for n in nodes if n.allocatable]
    if len(_reporting_cache) >= _REPORTING_LISTS:
        _reporting_cache.pop(next(iter(_reporting_cache)))
    _reporting_cache[id(nodes)] = (nodes, len(nodes), first, last, checked)
    return checked


def _ns_labels(namespaces: Mapping[str, Namespace]) -> dict[str, Mapping[str, str]]:
    return {name: ns.labels for name, ns in namespaces.items()}


@dataclass(slots=True)
class _Spread:
    c: SpreadConstraint
    matchers: tuple[Matcher, ...]
    counts: Counter[str]  # topology value -> matching pods on eligible nodes
    minimum: int
    self_match: int


class Context:
    """One pod's PreFilter state against the placed pods; `reject(node)` is its Filter."""

    def __init__(self, pod: Pod, nodes: Sequence[Node], node_by_name: Mapping[str, Node], pods: PodIndex,
                 namespaces: Mapping[str, Namespace], classes: Mapping[str, DeviceClass],
                 eligible: Callable[[Pod, SpreadConstraint, tuple[str, ...]], Sequence[Node]],
                 default_spread: Sequence[SpreadConstraint] = (), soft_taints: bool = True) -> None:
        self.pod = pod
        self.nodes = nodes
        self.node_by_name = node_by_name
        self.pods = pods
        self.classes = classes
        self.ns_labels = _ns_labels(namespaces)
        self.eligible = eligible
        self.soft_taints = soft_taints
        self.spread = pod.spread or _defaults(pod, default_spread)
        hard = [c for c in self.spread if c.hard]
        self.hard_keys = tuple(dict.fromkeys(c.topology_key for c in hard))
        self.hard = [self._spread_state(c, self.hard_keys) for c in hard]
        self._affinity()
        self.trivial = not (pod.host_ports or self.hard or self.anti or self.existing_anti or self.required_terms)

    # --- PodTopologySpread -----------------------------------------------------------------

    def _spread_state(self, c: SpreadConstraint, keys: tuple[str, ...]) -> _Spread:
        matchers: tuple[Matcher, ...]
        if c.owner_uid:
            matchers = (OwnerMatch(c.owner_uid),)
        elif c.selector is None:
            matchers = ()
        else:
            matchers = (c.selector,)
        eligible = self.eligible(self.pod, c, keys)
        counts: Counter[str] = Counter({n.labels[c.topology_key]: 0 for n in eligible})
        # Upstream quirk kept: an empty selector ({}) counts no placed pod, yet matches the pod itself.
        if matchers and not (isinstance(matchers[0], LabelSelector) and matchers[0].everything):
            live = self.pods.counts(matchers).live
            eligible_names = {n.name for n in eligible} if len(eligible) != len(self.nodes) else None
            ns = self.pod.namespace
            for (pns, node), n in live.items():
                if pns != ns or (eligible_names is not None and node not in eligible_names):
                    continue
                nd = self.node_by_name.get(node)
                if nd is None:
                    continue
                v = nd.labels.get(c.topology_key)
                if v is not None:
                    counts[v] += n
        minimum = min(counts.values()) if counts else NO_DOMAINS
        if c.min_domains is not None and len(counts) < c.min_domains:
            minimum = 0
        self_match = 1 if matchers and all(matches(m, self.pod) for m in matchers) else 0
        return _Spread(c, matchers, counts, minimum, self_match)

    # --- InterPodAffinity -------------------------------------------------------------------

    def _affinity(self) -> None:
        pod = self.pod
        a = pod.affinity
        self.required_terms: tuple[AffinityTerm, ...] = a.required if a else ()
        self.affinity_counts: Counter[tuple[str, str]] = Counter()
        self.anti: list[tuple[AffinityTerm, set[str]]] = []
        if self.required_terms and all(t.selector is not None for t in self.required_terms):
            matchers = tuple(dict.fromkeys(t.selector for t in self.required_terms if t.selector is not None))
            for (ns, node), n in self.pods.counts(matchers).every.items():
                nd = self.node_by_name.get(node)
                if nd is None or not all(t.namespace_ok(ns, self.ns_labels) for t in self.required_terms):
                    continue
                for t in self.required_terms:
                    v = nd.labels.get(t.topology_key)
                    if v is not None:
                        self.affinity_counts[(t.topology_key, v)] += n
        self.self_affine = bool(self.required_terms) and all(
            t.matches(pod.namespace, pod.labels, self.ns_labels) for t in self.required_terms)
        for t in a.required_anti if a else ():
            values: set[str] = set()
            if t.selector is not None:
                for (ns, node), _ in self.pods.counts((t.selector,)).every.items():
                    nd = self.node_by_name.get(node)
                    if nd is not None and t.namespace_ok(ns, self.ns_labels) and t.topology_key in nd.labels:
                        values.add(nd.labels[t.topology_key])
            if values:
                self.anti.append((t, values))
        # Placed pods' required anti-affinity that the incoming pod would violate.
        self.existing_anti: dict[str, set[str]] = {}
        for t, where in self.pods.anti_terms.items():
            if not t.matches(pod.namespace, pod.labels, self.ns_labels):
                continue
            for node in where:
                nd = self.node_by_name.get(node)
                if nd is not None and t.topology_key in nd.labels:
                    self.existing_anti.setdefault(t.topology_key, set()).add(nd.labels[t.topology_key])

    # --- Filter ---------------------------------------------------------------------------------

    def survivors(self, nodes: list[Node], rejected: Counter[str]) -> list[Node]:
        """The nodes `reject` lets through, in order, counting why the others did not: the same as
        asking `reject` node by node. A pod with no ports, spread or affinity can fail only
        NodeResourcesFit, and only on a node that reports allocatable; those are found once per
        node list (`_reporting`), so a pod on a fleet whose nodes report none costs O(1) here, not
        O(nodes), and `nodes` itself comes back when every node passes."""
        if not self.trivial:
            if self.pod.host_ports:
                return [n for n in nodes if (r := self.reject(n)) is None or _count(rejected, r)]
            return self._survivors_by_domain(nodes, rejected)
        checked = _reporting(nodes)
        if not checked:
            return nodes
        failed: dict[int, None] = {}
        pod, pods, classes = self.pod, self.pods, self.classes
        for n in checked:
            why = resource_fit(pod, n, pods, classes)
            if why is not None:
                failed[id(n)] = None
                rejected[why] += 1
        if not failed:
            return nodes
        return [n for n in nodes if id(n) not in failed]

    def _survivors_by_domain(self, nodes: list[Node], rejected: Counter[str]) -> list[Node]:
        """`survivors` for a pod with spread or affinity rules (and no host ports): what those
        rules say of a node depends only on its values for their topology keys, so it is asked
        once per distinct set of values (a zone and rack), not once per node."""
        keys = self._rule_keys()
        verdicts: dict[tuple[str | None, ...], Rejection | None] = {}
        out: list[Node] = []
        pod, pods, classes = self.pod, self.pods, self.classes
        for n in nodes:
            why = resource_fit(pod, n, pods, classes)
            if why is not None:
                rejected[why] += 1
                continue
            values = tuple(map(n.labels.get, keys))
            if values in verdicts:
                r = verdicts[values]
            else:
                r = verdicts[values] = self.reject_spread(n) or self.reject_affinity(n)
            if r is None:
                out.append(n)
            else:
                rejected[r.reason] += 1
        return out

    def _rule_keys(self) -> tuple[str, ...]:
        """The node labels `reject_spread` and `reject_affinity` read."""
        keys = [s.c.topology_key for s in self.hard]
        keys += [t.topology_key for t in self.required_terms]
        keys += [t.topology_key for t, _ in self.anti]
        keys += list(self.existing_anti)
        return tuple(dict.fromkeys(keys))

    def rejections(self, nodes: list[Node]) -> dict[str, Rejection] | None:
        """For a pod with no ports, spread or affinity, the nodes of `nodes` that `reject` refuses,
        with its answer (the others it lets through), found among the nodes that report
        allocatable only; None for any other pod (ask `reject` node by node)."""
        if not self.trivial:
            return None
        out: dict[str, Rejection] = {}
        pod, pods, classes = self.pod, self.pods, self.classes
        for n in _reporting(nodes):
            why = resource_fit(pod, n, pods, classes)
            if why is not None:
                out[n.name] = Rejection(why)
        return out

    def reject(self, node: Node) -> Rejection | None:
        """Why the pod cannot go on the node by the dynamic rules (devices and volumes aside)."""
        if self.pod.host_ports:
            used = self.pods.ports.get(node.name)
            if used and any(hp.conflicts(u) for hp in self.pod.host_ports for u in used):
                return Rejection(PORTS_IN_USE)
        why = resource_fit(self.pod, node, self.pods, self.classes)
        if why is not None:
            return Rejection(why)
        if self.trivial:
            return None
        return self.reject_spread(node) or self.reject_affinity(node)

    def reject_spread(self, node: Node) -> Rejection | None:
        labels = node.labels
        for s in self.hard:
            v = labels.get(s.c.topology_key)
            if v is None:
                return Rejection(SPREAD_MISSING_LABEL, resolvable=False)
            if s.counts.get(v, 0) + s.self_match - s.minimum > s.c.max_skew:
                return Rejection(SPREAD_MISMATCH)
        return None

    def reject_affinity(self, node: Node) -> Rejection | None:
        labels = node.labels
        if self.required_terms:
            exist = True
            for t in self.required_terms:
                v = labels.get(t.topology_key)
                if v is None:
                    return Rejection(AFFINITY_MISMATCH, resolvable=False)
                if self.affinity_counts.get((t.topology_key, v), 0) <= 0:
                    exist = False
            # The first pod of a group that is affine to itself may go anywhere its terms' keys exist.
            if not exist and not (not self.affinity_counts and self.self_affine):
                return Rejection(AFFINITY_MISMATCH, resolvable=False)
        for t, values in self.anti:
            v = labels.get(t.topology_key)
            if v is not None and v in values:
                return Rejection(ANTI_AFFINITY_MISMATCH)
        for key, values in self.existing_anti.items():
            v = labels.get(key)
            if v is not None and v in values:
                return Rejection(EXISTING_ANTI_AFFINITY)
        return None

    # --- Score -----------------------------------------------------------------------------------

    def scores(self, feasible: Sequence[Node]) -> dict[str, int] | None:
        """Weighted preference per feasible node, or None when no rule prefers one over another."""
        if len(feasible) < 2:
            return None
        parts = [(WEIGHT_TAINTS, self._taint_scores(feasible)),
                 (WEIGHT_NODE_AFFINITY, self._node_affinity_scores(feasible)),
                 (WEIGHT_SPREAD, self._spread_scores(feasible)),
                 (WEIGHT_POD_AFFINITY, self._pod_affinity_scores(feasible))]
        live = [(w, s) for w, s in parts if s is not None]
        if not live:
            return None
        total = {n.name: sum(w * s.get(n.name, 0) for w, s in live) for n in feasible}
        if len(set(total.values())) < 2:
            return None
        return total

    def _taint_scores(self, feasible: Sequence[Node]) -> dict[str, int] | None:
        if not self.soft_taints:
            return None
        tolerations = [t for t in self.pod.tolerations if t.effect in ("", "PreferNoSchedule")]
        raw: dict[str, int] = {}
        for n in feasible:
            raw[n.name] = sum(1 for t in n.taints if t.effect == "PreferNoSchedule" and not _tolerated(t, tolerations))
        top = max(raw.values())
        if top == 0:
            return None
        return {k: MAX_NODE_SCORE - v * MAX_NODE_SCORE // top for k, v in raw.items()}

    def _node_affinity_scores(self, feasible: Sequence[Node]) -> dict[str, int] | None:
        prefs = self.pod.preferred_node_affinity
        if not prefs:
            return None
        raw = {n.name: sum(p.weight for p in prefs if p.term.matches(n)) for n in feasible}
        top = max(raw.values())
        if top == 0:
            return None
        return {k: v * MAX_NODE_SCORE // top for k, v in raw.items()}

    def _spread_scores(self, feasible: Sequence[Node]) -> dict[str, int] | None:
        soft = [c for c in self.spread if not c.hard]
        if not soft:
            return None
        keys = tuple(dict.fromkeys(c.topology_key for c in soft))
        scored = [n for n in feasible if all(k in n.labels for k in keys)]
        if not scored:
            return None
        raw: dict[str, float] = {n.name: 0.0 for n in scored}
        for c in soft:
            st = self._spread_state(c, keys)
            size = len(scored) if c.topology_key == HOSTNAME else len({n.labels[c.topology_key] for n in scored})
            weight = math.log(size + 2)
            for n in scored:
                cnt = st.counts.get(n.labels[c.topology_key], 0)
                raw[n.name] += cnt * weight + (c.max_skew - 1)
        rounded = {k: round(v) for k, v in raw.items()}
        lo, hi = min(rounded.values()), max(rounded.values())
        out = dict.fromkeys((n.name for n in feasible), 0)
        for k, v in rounded.items():
            out[k] = MAX_NODE_SCORE if hi == 0 else MAX_NODE_SCORE * (hi + lo - v) // hi
        return out

    def _pod_affinity_scores(self, feasible: Sequence[Node]) -> dict[str, int] | None:
        pod = self.pod
        topo: Counter[tuple[str, str]] = Counter()
        a = pod.affinity
        weighted: list[tuple[AffinityTerm, int]] = []
        if a is not None:
            weighted = [(t, w) for w, t in a.preferred] + [(t, -w) for w, t in a.preferred_anti]
        for t, w in weighted:
            if t.selector is None:
                continue
            for (ns, node), n in self.pods.counts((t.selector,)).every.items():
                nd = self.node_by_name.get(node)
                if nd is not None and t.namespace_ok(ns, self.ns_labels) and t.topology_key in nd.labels:
                    topo[(t.topology_key, nd.labels[t.topology_key])] += w * n
        for (t, w), where in self.pods.weighted_terms.items():
            if not t.matches(pod.namespace, pod.labels, self.ns_labels):
                continue
            for node, n in where.items():
                nd = self.node_by_name.get(node)
                if nd is not None and t.topology_key in nd.labels:
                    topo[(t.topology_key, nd.labels[t.topology_key])] += w * n
        if not topo:
            return None
        keys = {k for k, _ in topo}
        raw = {n.name: sum(topo.get((k, n.labels[k]), 0) for k in keys if k in n.labels) for n in feasible}
        lo, hi = min(raw.values()), max(raw.values())
        if hi == lo:
            return None
        return {k: MAX_NODE_SCORE * (v - lo) // (hi - lo) for k, v in raw.items()}


def _tolerated(taint: Taint, tolerations: Iterable[Toleration]) -> bool:
    return any(t.tolerates(taint) for t in tolerations)


def matches_node_affinity(pod: Pod, node: Node) -> bool:
    """The pod's nodeSelector and required node affinity (NodeAffinity's filter)."""
    if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    return pod.required_affinity is None or pod.required_affinity.matches(node)


def _defaults(pod: Pod, defaults: Sequence[SpreadConstraint]) -> tuple[SpreadConstraint, ...]:
    """Cluster-level default constraints apply to a pod with none of its own that a controller
    owns; they count the pods of the same controller."""
    if not defaults or not pod.owner_uid:
        return ()
    return tuple(replace(c, owner_uid=pod.owner_uid) for c in defaults)


def spread_eligible(pod: Pod, c: SpreadConstraint, nodes: Iterable[Node], keys: tuple[str, ...]) -> list[Node]:
    """The nodes a constraint counts on: carrying every key of the pod's constraints of its kind,
    matching the pod's node selector and required affinity (nodeAffinityPolicy Honor), and with
    no taint the pod does not tolerate (nodeTaintsPolicy Honor)."""
    out = []
    for n in nodes:
        labels = n.labels
        if not all(k in labels for k in keys):
            continue
        if c.honor_node_affinity and not matches_node_affinity(pod, n):
            continue
        if c.honor_taints and untolerated(n.taints, pod.tolerations) is not None:
            continue
        out.append(n)
    return out
