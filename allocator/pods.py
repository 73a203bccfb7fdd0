"""The pods that hold a place on a node, indexed for the placement rules.

A pod is here while it is bound (`spec.nodeName` set, not finished) or placed by a decision
not yet seen back (simulate: every pod placed earlier in the run; the live service: its assume
cache). Everything the rules ask per decision is kept incrementally, so no rule ever walks
pods x nodes:

- per node: the summed requests of its pods (NodeResourcesFit) and the host ports in use
  (NodePorts);
- per label selector (or conjunction of selectors) asked about: the number of matching pods
  per (namespace, node), built on first use and updated as pods come and go (topology spread,
  inter-pod affinity);
- the affinity terms the placed pods carry (their required anti-affinity, their preferred
  terms, their required affinity), each with the nodes its pods sit on, for the symmetric
  checks and scores.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from .labels import LabelSelector
from .model import ObjectKey, Pod
from .podspec import AffinityTerm, HostPort

HARD_AFFINITY_WEIGHT = 1  # kube-scheduler's hardPodAffinityWeight default
MAX_COUNTERS = 4096  # distinct selectors kept; past that the index starts afresh (rebuilt on demand)


@dataclass(frozen=True, slots=True)
class OwnerMatch:
    """Matches the pods of one controller (default spread constraints count a workload's own pods)."""

    uid: str


Matcher = LabelSelector | OwnerMatch


def matches(m: Matcher, pod: Pod) -> bool:
    if isinstance(m, OwnerMatch):
        return pod.owner_uid == m.uid
    return m.matches(pod.labels)


@dataclass(slots=True)
class Counts:
    """Matching pods per (namespace, node): all of them, and those not being deleted."""

    every: Counter[tuple[str, str]]
    live: Counter[tuple[str, str]]


class PodIndex:
    def __init__(self) -> None:
        self.entries: dict[ObjectKey, tuple[Pod, str]] = {}
        self.usage: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # milli-units
        self.ports: dict[str, Counter[HostPort]] = defaultdict(Counter)
        self._counters: dict[tuple[Matcher, ...], Counts] = {}
        # Terms carried by placed pods: term -> node -> pods carrying it there.
        self.anti_terms: dict[AffinityTerm, Counter[str]] = defaultdict(Counter)
        self.weighted_terms: dict[tuple[AffinityTerm, int], Counter[str]] = defaultdict(Counter)  # signed weight

    def __contains__(self, key: ObjectKey) -> bool:
        return key in self.entries

    # --- changes -----------------------------------------------------------------------------

    def place(self, pod: Pod, node: str) -> tuple[Pod, str] | None:
        """Records the pod on the node (replacing where it was); returns the previous entry."""
        previous = self.remove(pod.key)
        self.entries[pod.key] = (pod, node)
        self._apply(pod, node, +1)
        return previous

    def remove(self, key: ObjectKey) -> tuple[Pod, str] | None:
        hit = self.entries.pop(key, None)
        if hit is None:
            return None
        pod, node = hit
        self._apply(pod, node, -1)
        return hit

    def restore(self, key: ObjectKey, previous: tuple[Pod, str] | None) -> None:
        """Undoes a `place` that returned `previous`."""
        self.remove(key)
        if previous is not None:
            self.place(*previous)

    def _apply(self, pod: Pod, node: str, sign: int) -> None:
        usage = self.usage[node]
        for res, v in pod.requests.items():
            usage[res] += sign * v
        usage["pods"] += sign * 1000  # milli-units, like everything else here
        if pod.host_ports:
            ports = self.ports[node]
            for hp in pod.host_ports:
                ports[hp] += sign
            if sign < 0:
                ports += Counter()  # drop zero counts
                if not ports:
                    del self.ports[node]
        if sign < 0 and usage["pods"] <= 0:
            del self.usage[node]
        at = (pod.namespace, node)
        for matchers, counts in self._counters.items():
            if all(matches(m, pod) for m in matchers):
                _bump(counts.every, at, sign)
                if not pod.deleting:
                    _bump(counts.live, at, sign)
        a = pod.affinity
        if a is None:
            return
        for t in a.required_anti:
            _bump(self.anti_terms[t], node, sign)
            if not self.anti_terms[t]:
                del self.anti_terms[t]
        weighted = [(t, w) for w, t in a.preferred] + [(t, -w) for w, t in a.preferred_anti] + \
                   [(t, HARD_AFFINITY_WEIGHT) for t in a.required]
        for tw in weighted:
            _bump(self.weighted_terms[tw], node, sign)
            if not self.weighted_terms[tw]:
                del self.weighted_terms[tw]

    # --- questions ---------------------------------------------------------------------------

    def counts(self, matchers: tuple[Matcher, ...]) -> Counts:
        """Pods matching every matcher, per (namespace, node); built on first use, then kept."""
        hit = self._counters.get(matchers)
        if hit is None:
            if len(self._counters) >= MAX_COUNTERS:
                self._counters.clear()
            every: Counter[tuple[str, str]] = Counter()
            live: Counter[tuple[str, str]] = Counter()
            for pod, node in self.entries.values():
                if all(matches(m, pod) for m in matchers):
                    every[(pod.namespace, node)] += 1
                    if not pod.deleting:
                        live[(pod.namespace, node)] += 1
            hit = self._counters[matchers] = Counts(every, live)
        return hit


def _bump(c: Counter[tuple[str, str]] | Counter[str], key: object, sign: int) -> None:
    n = c.get(key, 0) + sign  # type: ignore[call-overload]
    if n:
        c[key] = n  # type: ignore[index]
    else:
        c.pop(key, None)  # type: ignore[call-overload]
