"""Device binding conditions (DRADeviceBindingConditions, beta and on by default since 1.35).

A device that lists `bindingConditions` is not ready when allocated: its driver (or a controller
attaching it, for fabric devices) reports progress in the claim's `status.devices[].conditions`.
The pod may be bound only once every binding condition of every such device is True; any True
`bindingFailureConditions` entry, or `allocationTimestamp + bindingTimeout` passing, fails the
binding and the claim is deallocated so the pod can be decided again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .timestamps import parse_time

Obj = dict[str, Any]
DEFAULT_BINDING_TIMEOUT = 600.0  # seconds, as kube-scheduler's DynamicResourcesArgs.bindingTimeout
DEFAULT_VOLUME_BIND_TIMEOUT = 600.0  # seconds, as kube-scheduler's VolumeBindingArgs.bindTimeoutSeconds
# seconds filter, prioritize and preempt may take, waiting included, before answering that they
# could not decide in time: under kube-scheduler's default extender timeout of 5 s
DEFAULT_DECISION_DEADLINE = 4.0
DEFAULT_BIND_WAIT = 3.0  # seconds an extender /bind call waits; kube-scheduler allows an extender 5 s by default


@dataclass(frozen=True, slots=True)
class Readiness:
    state: Literal["ready", "pending", "failed"]
    why: str = ""


READY = Readiness("ready")


def needs_binding_conditions(allocation: Obj | None) -> bool:
    return any(r.get("bindingConditions") for r in ((allocation or {}).get("devices") or {}).get("results") or [])


def readiness(claim: Obj, now: datetime, timeout: float, waiting_since: datetime) -> Readiness:
    """Whether the pod holding `claim` may be bound. `waiting_since` stands in for a missing
    `allocationTimestamp` (an allocation written by someone who did not set it)."""
    meta = claim.get("metadata") or {}
    ref = f"claim {meta.get('namespace', '')}/{meta.get('name', '')}"
    status = claim.get("status") or {}
    allocation = status.get("allocation")
    if not allocation:
        return Readiness("failed", f"{ref} is no longer allocated")
    results = [r for r in (allocation.get("devices") or {}).get("results") or [] if r.get("bindingConditions")]
    if not results:
        return READY
    conditions: dict[tuple[str, str, str, str], dict[str, str]] = {}
    for d in status.get("devices") or []:
        key = (d.get("driver", ""), d.get("pool", ""), d.get("device", ""), d.get("shareID") or "")
        conditions[key] = {c.get("type", ""): c.get("status", "") for c in d.get("conditions") or []}
    missing: list[str] = []
    for r in results:
        device = f"{r.get('driver')}/{r.get('pool')}/{r.get('device')}"
        have = conditions.get((r.get("driver", ""), r.get("pool", ""), r.get("device", ""), r.get("shareID") or ""), {})
        failed = [t for t in r.get("bindingFailureConditions") or [] if have.get(t) == "True"]
        if failed:
            return Readiness("failed", f"{ref}: device {device} (request {r.get('request')}) reports binding failure "
                                       f"condition {', '.join(failed)}")
        missing += [f"{t} on {device}" for t in r["bindingConditions"] if have.get(t) != "True"]
    if not missing:
        return READY
    since = parse_time(allocation.get("allocationTimestamp")) or waiting_since
    waited = (now - since).total_seconds()
    if waited > timeout:
        return Readiness("failed", f"{ref}: binding conditions not met after {waited:.0f}s "
                                   f"(bindingTimeout {timeout:.0f}s): waiting for {', '.join(missing)}")
    return Readiness("pending", f"{ref}: waiting for binding conditions {', '.join(missing)} "
                                f"(allocated {waited:.0f}s ago, bindingTimeout {timeout:.0f}s)")
