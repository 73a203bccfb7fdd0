"""core/v1 NodeSelector, Node and taint/toleration matching, shared by devices and pods."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

NODE_NAME_FIELD = "metadata.name"


SET_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


def set_requirement_holds(op: str, values: Collection[str], value: str | None) -> bool:
    """In / NotIn / Exists / DoesNotExist on a label's value (None: the label is absent), as node
    selectors and label selectors both read them."""
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    return value is None  # DoesNotExist


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist | Gt | Lt
    values: tuple[str, ...] = ()

    def matches(self, value: str | None) -> bool:
        op = self.operator
        if op in SET_OPERATORS:
            return set_requirement_holds(op, self.values, value)
        if op in ("Gt", "Lt"):
            if value is None or len(self.values) != 1:
                return False
            try:
                have, want = int(value), int(self.values[0])
            except ValueError:
                return False
            return have > want if op == "Gt" else have < want
        return False

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"key": self.key, "operator": self.operator}
        if self.values:
            out["values"] = list(self.values)
        return out


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    match_expressions: tuple[Requirement, ...] = ()
    match_fields: tuple[Requirement, ...] = ()

    def matches(self, node: Node) -> bool:
        if not self.match_expressions and not self.match_fields:
            return False  # an empty term selects nothing, as in Kubernetes
        labels = node.labels
        for r in self.match_expressions:
            if not r.matches(labels.get(r.key)):
                return False
        return all(r.matches(node.name if r.key == NODE_NAME_FIELD else None) for r in self.match_fields)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.match_expressions:
            out["matchExpressions"] = [r.to_json() for r in self.match_expressions]
        if self.match_fields:
            out["matchFields"] = [r.to_json() for r in self.match_fields]
        return out


@dataclass(frozen=True, slots=True)
class NodeSelector:
    terms: tuple[NodeSelectorTerm, ...]

    def matches(self, node: Node) -> bool:
        return any(t.matches(node) for t in self.terms)

    def to_json(self) -> dict[str, object]:
        return {"nodeSelectorTerms": [t.to_json() for t in self.terms]}


def node_name_selector(node_name: str) -> NodeSelector:
    return NodeSelector((NodeSelectorTerm(match_fields=(Requirement(NODE_NAME_FIELD, "In", (node_name,)),)),))


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def describe(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"  # Equal | Exists
    value: str = ""
    effect: str = ""  # "" tolerates every effect
    toleration_seconds: int | None = None

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        # An empty key with Equal is rejected by validation; treat it as matching nothing.
        return bool(self.key) and self.value == taint.value

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.key:
            out["key"] = self.key
        out["operator"] = self.operator
        if self.value:
            out["value"] = self.value
        if self.effect:
            out["effect"] = self.effect
        if self.toleration_seconds is not None:
            out["tolerationSeconds"] = self.toleration_seconds
        return out


def milli(v: Fraction) -> int:
    """A resource quantity in integer milli-units, rounded up, as kube-scheduler's MilliValue:
    resource fit adds and compares plain ints on its hot path."""
    return -((-v * 1000) // 1)


BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


def untolerated(taints: tuple[Taint, ...], tolerations: tuple[Toleration, ...]) -> Taint | None:
    """The first NoSchedule/NoExecute taint no toleration matches; None and unknown effects are informational."""
    for t in taints:
        if t.effect in BLOCKING_EFFECTS and not any(tol.tolerates(t) for tol in tolerations):
            return t
    return None


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    taints: tuple[Taint, ...] = ()
    allocatable: Mapping[str, int] = field(default_factory=dict)  # status.allocatable, in milli-units (see milli())
