"""metav1.LabelSelector: parsed once, matched against label maps.

Upstream semantics: an absent selector (None here) selects nothing; an empty one (`{}`)
selects everything; `matchLabels` and `matchExpressions` are ANDed. Operators are In, NotIn,
Exists and DoesNotExist (Gt/Lt belong to node selectors only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SpecError
from .nodeselector import set_requirement_holds

LABEL_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return set_requirement_holds(self.operator, self.values, labels.get(self.key))


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """Requirements ANDed; hashable, so equal selectors share cached counts."""

    requirements: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def everything(self) -> bool:
        return not self.requirements

    def with_requirement(self, req: LabelRequirement) -> LabelSelector:
        if req in self.requirements:
            return self
        return LabelSelector(tuple(sorted((*self.requirements, req), key=_order)))

    def describe(self) -> str:
        parts = []
        for r in self.requirements:
            if r.operator == "In" and len(r.values) == 1:
                parts.append(f"{r.key}={next(iter(r.values))}")
            elif r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(sorted(r.values))})")
            elif r.operator == "Exists":
                parts.append(r.key)
            else:
                parts.append(f"!{r.key}")
        return ",".join(parts) or "<everything>"


def _order(r: LabelRequirement) -> tuple[str, str, tuple[str, ...]]:
    return (r.key, r.operator, tuple(sorted(r.values)))


def parse_label_selector(kind: str, ref: str, raw: Any, path: str) -> LabelSelector:
    """A LabelSelector from JSON, or SpecError naming the field and the bad value."""
    def fail(p: str, msg: str) -> SpecError:
        return SpecError(kind, ref, p, msg)

    if not isinstance(raw, Mapping):
        raise fail(path, "must be an object (a label selector)")
    reqs: list[LabelRequirement] = []
    ml = raw.get("matchLabels")
    if ml is not None:
        if not isinstance(ml, Mapping):
            raise fail(f"{path}.matchLabels", "must be a map of label keys to values")
        for k, v in ml.items():
            if not isinstance(k, str) or not k:
                raise fail(f"{path}.matchLabels", f"keys must be non-empty strings, got {k!r}")
            if v is None or isinstance(v, (list, Mapping)):
                raise fail(f"{path}.matchLabels[{k}]", f"must be a string, got {v!r}")
            text = ("true" if v else "false") if isinstance(v, bool) else str(v)
            reqs.append(LabelRequirement(k, "In", frozenset((text,))))
    exprs = raw.get("matchExpressions")
    if exprs is not None:
        if not isinstance(exprs, list):
            raise fail(f"{path}.matchExpressions", "must be a list")
        for i, e in enumerate(exprs):
            ep = f"{path}.matchExpressions[{i}]"
            if not isinstance(e, Mapping):
                raise fail(ep, "must be an object")
            key = e.get("key")
            if not isinstance(key, str) or not key:
                raise fail(f"{ep}.key", "required, a non-empty label key")
            op = e.get("operator")
            if op not in LABEL_OPS:
                raise fail(f"{ep}.operator", f"unknown operator \"{op}\": expected one of {', '.join(LABEL_OPS)}")
            values_raw = e.get("values") or []
            if not isinstance(values_raw, list):
                raise fail(f"{ep}.values", "must be a list of strings")
            values = []
            for j, v in enumerate(values_raw):
                if v is None or isinstance(v, (list, Mapping)):
                    raise fail(f"{ep}.values[{j}]", f"must be a string, got {v!r}")
                values.append(("true" if v else "false") if isinstance(v, bool) else str(v))
            if op in ("In", "NotIn") and not values:
                raise fail(f"{ep}.values", f"must be non-empty for operator {op}")
            if op in ("Exists", "DoesNotExist") and values:
                raise fail(f"{ep}.values", f"must be empty for operator {op}")
            reqs.append(LabelRequirement(key, op, frozenset(values)))
    return LabelSelector(tuple(sorted(dict.fromkeys(reqs), key=_order)))
