"""Pod priority: PriorityClasses (scheduling.k8s.io/v1) and what the API server's Priority
admission plugin makes of a pod's `priorityClassName`, `priority` and `preemptionPolicy`.

`parse_priority_class` validates a PriorityClass as the API server does (a DNS-subdomain name,
an int32 `value` of at most 1,000,000,000 unless it is one of the built-in `system-` classes,
`preemptionPolicy` Never or PreemptLowerPriority) and raises `SpecError` naming the field.

`effective_priority` resolves a pod as Priority admission does on create:

- `spec.priorityClassName` names a class: its value (the built-in `system-cluster-critical` and
  `system-node-critical` exist without being listed); a class that does not exist is an error;
- no class name: the `globalDefault` class (the lowest value if several claim it, as upstream),
  else priority 0 and PreemptLowerPriority;
- `spec.preemptionPolicy` comes from the pod or from its class.

Where admission refuses a pod, so does this: a `spec.priority` or `spec.preemptionPolicy`
that contradicts the class named. Two deliberate differences, because a pod Tessera reads has
usually been admitted already (its `priorityClassName` then names the class it was resolved
from): a pod with `spec.priority` and no class name keeps that priority (admission would compare
it with the default class's), and a pod that says `preemptionPolicy: Never` with no class keeps it
(admission would insist on the default's PreemptLowerPriority).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, cast

from .model import Pod
from .parse import describe_value, object_metadata

PreemptionPolicy = Literal["PreemptLowerPriority", "Never"]
PREEMPTION_POLICIES: tuple[PreemptionPolicy, ...] = ("Never", "PreemptLowerPriority")
PREEMPT_LOWER: PreemptionPolicy = "PreemptLowerPriority"
NEVER: PreemptionPolicy = "Never"
API_VERSION = "scheduling.k8s.io/v1"
HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000
SYSTEM_CRITICAL_PRIORITY = 2 * HIGHEST_USER_DEFINABLE_PRIORITY
SYSTEM_PREFIX = "system-"
SYSTEM_CLUSTER_CRITICAL = "system-cluster-critical"
SYSTEM_NODE_CRITICAL = "system-node-critical"
DEFAULT_PRIORITY = 0  # no class named and no globalDefault class
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class PriorityClass:
    name: str
    value: int
    global_default: bool = False
    preemption_policy: PreemptionPolicy = PREEMPT_LOWER
    description: str = ""


BUILTIN_CLASSES: Mapping[str, PriorityClass] = {
    SYSTEM_CLUSTER_CRITICAL: PriorityClass(SYSTEM_CLUSTER_CRITICAL, SYSTEM_CRITICAL_PRIORITY,
                                           description="Used for system critical pods that must run in the cluster, "
                                                       "but can be moved to another node if necessary."),
    SYSTEM_NODE_CRITICAL: PriorityClass(SYSTEM_NODE_CRITICAL, SYSTEM_CRITICAL_PRIORITY + 1000,
                                        description="Used for system critical pods that must not be moved from their "
                                                    "current node."),
}


class PodPriority(NamedTuple):
    """What admission resolved: the pod's priority, its preemption policy, and the class both
    came from ("" when neither came from a class)."""

    value: int
    preemption_policy: PreemptionPolicy
    class_name: str = ""


def parse_priority_class(obj: Mapping[str, Any]) -> PriorityClass:
    """A scheduling.k8s.io/v1 PriorityClass, validated as the API server validates it."""
    _, name, o = object_metadata(obj, "PriorityClass", namespaced=False)
    fail = o.fail

    api = obj.get("apiVersion")
    if api is not None and api != API_VERSION:
        raise fail("apiVersion", f"must be {API_VERSION}, got {describe_value(api)}")
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise fail("metadata.name", "must be a lowercase RFC 1123 subdomain (lowercase letters, digits, '-' and '.', "
                                    "starting and ending with a letter or digit, at most 253 characters)")
    # PriorityClass keeps its fields at the top level, beside metadata (there is no spec).
    value = obj.get("value")
    if value is None:
        raise fail("value", "required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail("value", f"must be an integer, got {describe_value(value)}")
    if not INT32_MIN <= value <= INT32_MAX:
        raise fail("value", f"must be a 32-bit integer ({INT32_MIN} to {INT32_MAX}), got {value}")
    default = obj.get("globalDefault", False)
    if default is None:
        default = False
    if not isinstance(default, bool):
        raise fail("globalDefault", f"must be true or false, got {describe_value(default)}")
    policy_raw = obj.get("preemptionPolicy")
    if policy_raw is None:
        policy: PreemptionPolicy = PREEMPT_LOWER
    elif policy_raw in PREEMPTION_POLICIES:
        policy = cast(PreemptionPolicy, policy_raw)
    else:
        raise fail("preemptionPolicy", f"must be one of {', '.join(PREEMPTION_POLICIES)}, got {describe_value(policy_raw)}")
    description = obj.get("description") or ""
    if not isinstance(description, str):
        raise fail("description", f"must be a string, got {describe_value(description)}")
    if name.startswith(SYSTEM_PREFIX):
        builtin = BUILTIN_CLASSES.get(name)
        if builtin is None:
            raise fail("metadata.name", f"names starting with {SYSTEM_PREFIX!r} are reserved for the built-in classes "
                                        f"{', '.join(sorted(BUILTIN_CLASSES))}")
        if value != builtin.value:
            raise fail("value", f"must be {builtin.value} for the built-in class {name}, got {value}")
        if default:
            raise fail("globalDefault", f"must be false for the built-in class {name}")
    elif value > HIGHEST_USER_DEFINABLE_PRIORITY:
        raise fail("value", f"must be at most {HIGHEST_USER_DEFINABLE_PRIORITY} for a user-defined class "
                            f"(only the built-in system- classes go higher), got {value}")
    return PriorityClass(name, value, default, policy, description)


def priority_classes(classes: Iterable[PriorityClass] = ()) -> dict[str, PriorityClass]:
    """Classes by name, the built-in ones included (a listed class of the same name replaces it)."""
    out = dict(BUILTIN_CLASSES)
    for c in classes:
        out[c.name] = c
    return out


def default_class(classes: Mapping[str, PriorityClass]) -> PriorityClass | None:
    """The globalDefault class; if several claim it (a race the API server can lose), the one
    with the lowest value, as admission picks (then the first by name)."""
    defaults = [c for c in classes.values() if c.global_default]
    return min(defaults, key=lambda c: (c.value, c.name)) if defaults else None


def effective_priority(pod: Mapping[str, Any] | Pod, classes: Mapping[str, PriorityClass]) -> PodPriority | str:
    """The pod's priority and preemption policy as Priority admission resolves them, or why the
    API server would refuse the pod (naming the pod and the field).

    `pod` is a Pod object (JSON) or a parsed `Pod`, whose `priority_class_name`,
    `preemption_policy` and `priority_set` (whether `spec.priority` was given; the model's
    `priority` is 0 when it was not) `parse_pod` reads."""
    if isinstance(pod, Pod):
        class_name = pod.priority_class_name
        policy_given = pod.preemption_policy or None
        priority_given: int | None = pod.priority if pod.priority_set else None
        ref = pod.ref
        if policy_given is not None and policy_given not in PREEMPTION_POLICIES:
            return (f"Pod {ref}: spec.preemptionPolicy: must be one of {', '.join(PREEMPTION_POLICIES)}, "
                    f"got {describe_value(policy_given)}")
    else:
        meta = pod.get("metadata") if isinstance(pod.get("metadata"), Mapping) else {}
        assert isinstance(meta, Mapping)
        ref = f"{meta.get('namespace') or 'default'}/{meta.get('name') or ''}"
        spec = pod.get("spec")
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            return f"Pod {ref}: spec: must be an object, got {describe_value(spec)}"
        class_name = spec.get("priorityClassName") or ""
        if not isinstance(class_name, str):
            return f"Pod {ref}: spec.priorityClassName: must be a string, got {describe_value(class_name)}"
        priority_given = spec.get("priority")
        if priority_given is not None and (isinstance(priority_given, bool) or not isinstance(priority_given, int)
                                           or not INT32_MIN <= priority_given <= INT32_MAX):
            return f"Pod {ref}: spec.priority: must be a 32-bit integer, got {describe_value(priority_given)}"
        policy_given = spec.get("preemptionPolicy")
        if policy_given is not None and policy_given not in PREEMPTION_POLICIES:
            return (f"Pod {ref}: spec.preemptionPolicy: must be one of {', '.join(PREEMPTION_POLICIES)}, "
                    f"got {describe_value(policy_given)}")
    everything = {**BUILTIN_CLASSES, **classes}
    if class_name:
        pc = everything.get(class_name)
        if pc is None:
            return f"Pod {ref}: spec.priorityClassName: PriorityClass {class_name} not found"
        if priority_given is not None and priority_given != pc.value:
            return (f"Pod {ref}: spec.priority: {priority_given} contradicts PriorityClass {class_name}, whose value is "
                    f"{pc.value} (the API server refuses such a pod)")
        if policy_given is not None and policy_given != pc.preemption_policy:
            return (f"Pod {ref}: spec.preemptionPolicy: {policy_given} contradicts PriorityClass {class_name}, whose "
                    f"preemptionPolicy is {pc.preemption_policy} (the API server refuses such a pod)")
        return PodPriority(pc.value, pc.preemption_policy, pc.name)
    policy = cast(PreemptionPolicy, policy_given) if policy_given is not None else None
    if priority_given is not None:
        # Already admitted (or written so in a simulate file): the priority stands.
        return PodPriority(priority_given, policy or PREEMPT_LOWER)
    dc = default_class(everything)
    if dc is not None:
        if policy is not None and policy != dc.preemption_policy:
            return (f"Pod {ref}: spec.preemptionPolicy: {policy} contradicts the globalDefault PriorityClass {dc.name}, "
                    f"whose preemptionPolicy is {dc.preemption_policy} (the API server refuses such a pod)")
        return PodPriority(dc.value, dc.preemption_policy, dc.name)
    return PodPriority(DEFAULT_PRIORITY, policy or PREEMPT_LOWER)
