"""PodDisruptionBudgets (policy/v1), as preemption counts them.

`parse_pdb` validates a PodDisruptionBudget as the API server does (a label selector;
`minAvailable` or `maxUnavailable`, not both, each an integer >= 0 or a percentage "0%".."100%";
`unhealthyPodEvictionPolicy` IfHealthyBudget or AlwaysAllow; `status.disruptionsAllowed` >= 0)
and raises `SpecError` naming the field.

What counts, as kube-scheduler's DefaultPreemption reads it:

- A budget covers a pod of its namespace whose labels its selector matches. A selector that is
  absent or empty covers nothing (`selector.Empty()`: the scheduler and the Eviction API both
  treat it so, not as "every pod"), and neither does anything cover a pod without labels.
- `status.disruptionsAllowed` is what the PDB controller says may go now. A pod already in
  `status.disruptedPods` was counted by the API server: evicting it again costs nothing.
- `violations(budgets)(pods)` is upstream's filterPodsWithPDBViolation: the pods taken in order,
  each decrements every budget that covers it; a pod that drives one of them below zero is a
  violation. `preempt_pod` and `preempt_gang` take that function (`pdb_violations`).

`disruptions_allowed` is the PDB controller's own arithmetic, for a budget nobody has written a
status for yet (a simulate cluster file): desired healthy pods from `minAvailable` (a percentage
of the expected pods, rounded up) or from `maxUnavailable` (expected minus it, a percentage
rounded up), against the healthy pods. The expected count is the pods the selector covers (the
controller takes it from their controllers' scale; for pods counted here both agree).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .labels import LabelSelector, parse_label_selector
from .model import ObjectKey, Pod
from .parse import describe_value, object_metadata

API_VERSION = "policy/v1"
KIND = "PodDisruptionBudget"
UNHEALTHY_POLICIES = ("IfHealthyBudget", "AlwaysAllow")
_PERCENT = re.compile(r"^[0-9]+%$")
IntOrPercent = int | str  # 3, or "50%"


@dataclass(frozen=True, slots=True)
class DisruptionBudget:
    namespace: str
    name: str
    selector: LabelSelector | None  # None: absent or empty, covers nothing
    min_available: IntOrPercent | None = None
    max_unavailable: IntOrPercent | None = None
    disruptions_allowed: int | None = None  # status.disruptionsAllowed; None: no status written yet
    disrupted_pods: frozenset[str] = frozenset()  # status.disruptedPods: names the API server already counted

    @property
    def key(self) -> ObjectKey:
        return (self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def covers(self, pod: Pod) -> bool:
        return (self.selector is not None and pod.namespace == self.namespace and bool(pod.labels)
                and self.selector.matches(pod.labels))

    @property
    def allowed(self) -> int:
        """What may go now: the status, or 0 while the controller has not written one (the API
        server refuses evictions then too)."""
        return self.disruptions_allowed or 0


def _int_or_percent(o: Any, raw: Any, path: str) -> IntOrPercent:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise o.fail(path, f"must be an integer or a percentage such as \"50%\", got {describe_value(raw)}")
    if isinstance(raw, int):
        if raw < 0:
            raise o.fail(path, f"must be greater than or equal to 0, got {raw}")
        return raw
    if not _PERCENT.match(raw):
        raise o.fail(path, f"must be an integer or a percentage such as \"50%\" (digits then %), got {raw!r}")
    if int(raw[:-1]) > 100:
        raise o.fail(path, f"must not be greater than 100%, got {raw!r}")
    return raw


def parse_pdb(obj: Mapping[str, Any]) -> DisruptionBudget:
    """A policy/v1 PodDisruptionBudget, validated as the API server validates it."""
    ns, name, o = object_metadata(obj, KIND, namespaced=True)
    api = obj.get("apiVersion")
    if api is not None and api != API_VERSION:
        raise o.fail("apiVersion", f"must be {API_VERSION}, got {describe_value(api)}")
    spec = o.mapping(obj, "spec", "")
    selector: LabelSelector | None = None
    raw_sel = spec.get("selector")
    if raw_sel is not None:
        parsed = parse_label_selector(KIND, o.ref, raw_sel, "spec.selector")
        selector = None if parsed.everything else parsed
    lo, hi = spec.get("minAvailable"), spec.get("maxUnavailable")
    if lo is not None and hi is not None:
        raise o.fail("spec", "minAvailable and maxUnavailable cannot be both set")
    min_available = None if lo is None else _int_or_percent(o, lo, "spec.minAvailable")
    max_unavailable = None if hi is None else _int_or_percent(o, hi, "spec.maxUnavailable")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in UNHEALTHY_POLICIES:
        raise o.fail("spec.unhealthyPodEvictionPolicy",
                     f"must be one of {', '.join(UNHEALTHY_POLICIES)}, got {describe_value(policy)}")
    status = o.mapping(obj, "status", "")
    allowed = status.get("disruptionsAllowed")
    if allowed is not None:
        if isinstance(allowed, bool) or not isinstance(allowed, int):
            raise o.fail("status.disruptionsAllowed", f"must be an integer, got {describe_value(allowed)}")
        if allowed < 0:
            raise o.fail("status.disruptionsAllowed", f"must be greater than or equal to 0, got {allowed}")
    disrupted = o.mapping(status, "disruptedPods", "status")
    return DisruptionBudget(ns, name, selector, min_available, max_unavailable, allowed,
                            frozenset(str(k) for k in disrupted))


def _scaled(v: IntOrPercent, total: int) -> int:
    """intstr.GetScaledValueFromIntOrPercent, rounding up."""
    if isinstance(v, int):
        return v
    return math.ceil(int(v[:-1]) * total / 100)


def disruptions_allowed(budget: DisruptionBudget, healthy: int, expected: int | None = None) -> int:
    """The PDB controller's disruptionsAllowed for `healthy` covered pods (`expected`: the pods
    their controllers want, default `healthy`). With neither field set it is minAvailable 1."""
    expected = healthy if expected is None else expected
    if budget.max_unavailable is not None:
        desired = max(0, expected - _scaled(budget.max_unavailable, expected))
    else:
        desired = _scaled(1 if budget.min_available is None else budget.min_available, expected)
    return max(0, healthy - desired)


def with_status(budgets: Iterable[DisruptionBudget], pods: Iterable[Pod]) -> list[DisruptionBudget]:
    """Budgets without a status get the one the PDB controller would write, counting `pods`
    (those running) as healthy; budgets with a status keep it."""
    pods = list(pods)
    out = []
    for b in budgets:
        if b.disruptions_allowed is None:
            n = sum(1 for p in pods if b.covers(p))
            b = DisruptionBudget(b.namespace, b.name, b.selector, b.min_available, b.max_unavailable,
                                 disruptions_allowed(b, n), b.disrupted_pods)
        out.append(b)
    return out


def covering(budgets: Iterable[DisruptionBudget], pod: Pod) -> list[DisruptionBudget]:
    """The budgets that cover the pod (for the Eviction API: more than one is an error there)."""
    return [b for b in budgets if b.covers(pod)]


def violations(budgets: Iterable[DisruptionBudget]) -> Callable[[Sequence[Pod]], int]:
    """How many of these pods, evicted in this order, a budget does not allow (see the module
    docstring); `preempt_pod`'s `pdb_violations`."""
    by_ns: dict[str, list[DisruptionBudget]] = {}
    for b in budgets:
        if b.selector is not None:
            by_ns.setdefault(b.namespace, []).append(b)

    def count(pods: Sequence[Pod]) -> int:
        left: dict[ObjectKey, int] = {}
        n = 0
        for p in pods:
            violated = False
            for b in by_ns.get(p.namespace, ()) if p.labels else ():
                if not b.covers(p) or p.name in b.disrupted_pods:
                    continue
                left[b.key] = left.get(b.key, b.allowed) - 1
                violated = violated or left[b.key] < 0
            n += violated
        return n

    return count
