"""Building the v1 AllocationResult for a claim, and its Kubernetes JSON.

- results in allocation order; `request` is `req` or `req/sub`; `adminAccess` only when true;
  the request's tolerations copied; the device's binding conditions copied; `shareID` and
  `consumedCapacity` for allocations of shared devices.
- config: each DeviceClass's config once (`FromClass`, listing the results' request names that
  used the class), then the claim's config (`FromClaim`), limited to the requests that were
  allocated (a config naming only unselected subrequests is dropped).
- nodeSelector: `metadata.name In [node]` if any device is node-local or binds to its node;
  otherwise the AND of the slices'/devices' selectors; omitted when every device is on all nodes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .capacity import as_quantities
from .model import Allocation, Claim, ConfigResult, DeviceClass, DeviceResult
from .nodeselector import NodeSelector, NodeSelectorTerm, Requirement, node_name_selector
from .search import Pick

_SHARE_NS = uuid.UUID("6f1d8a52-3c1e-4a8e-9f55-0c0e7f2d5b11")


def share_id(claim: Claim, index: int, pick: Pick) -> str:
    """Deterministic and unique per (claim, result): the same input gives the same answer."""
    return str(uuid.uuid5(_SHARE_NS, f"{claim.namespace}/{claim.name}/{claim.uid}/{index}/{pick.device.key}"))


def build_allocation(claim: Claim, picks: Sequence[Pick], node_name: str,
                     classes: Mapping[str, DeviceClass]) -> Allocation:
    results = []
    for i, p in enumerate(picks):
        d = p.device
        shared = d.allow_multiple_allocations
        results.append(DeviceResult(
            request=p.result_name, driver=d.driver, pool=d.pool, device=d.name,
            admin_access=p.admin, tolerations=p.alt.tolerations,
            binding_conditions=d.binding_conditions, binding_failure_conditions=d.binding_failure_conditions,
            share_id=share_id(claim, i, p) if shared else None,
            consumed_capacity=as_quantities(d, p.charges) if shared and p.charges else {},
        ))
    return Allocation(tuple(results), _config(claim, picks, classes), _node_selector(picks, node_name))


def _config(claim: Claim, picks: Sequence[Pick], classes: Mapping[str, DeviceClass]) -> tuple[ConfigResult, ...]:
    out: list[ConfigResult] = []
    by_class: dict[str, list[str]] = {}
    for p in picks:
        names = by_class.setdefault(p.alt.device_class, [])
        if p.result_name not in names:
            names.append(p.result_name)
    for cls_name, names in by_class.items():
        cls = classes.get(cls_name)
        if cls is None:
            continue
        for opaque in cls.config:
            out.append(ConfigResult("FromClass", tuple(names), opaque))
    allocated = {p.result_name for p in picks} | {p.request.name for p in picks}
    for cfg in claim.spec.config:
        if not cfg.requests:
            out.append(ConfigResult("FromClaim", (), cfg.opaque))
            continue
        # Copied as written when it names any allocated request; names of subrequests that were
        # not chosen are harmless, as drivers match configs to results by name.
        if any(r in allocated for r in cfg.requests):
            out.append(ConfigResult("FromClaim", cfg.requests, cfg.opaque))
    return tuple(out)


def _node_selector(picks: Sequence[Pick], node_name: str) -> NodeSelector | None:
    requirements: list[Requirement] = []
    fields: list[Requirement] = []
    for p in picks:
        d = p.device
        if d.access.is_local or d.binds_to_node:
            return node_name_selector(node_name)
        sel = d.access.node_selector
        if sel is None:
            continue
        term = sel.terms[0]
        for r in term.match_expressions:
            if r not in requirements:
                requirements.append(r)
        for r in term.match_fields:
            if r not in fields:
                fields.append(r)
    if not requirements and not fields:
        return None
    return NodeSelector((NodeSelectorTerm(tuple(requirements), tuple(fields)),))


# --- Kubernetes JSON ------------------------------------------------------------------------

def result_to_json(r: DeviceResult) -> dict[str, Any]:
    out: dict[str, Any] = {"request": r.request, "driver": r.driver, "pool": r.pool, "device": r.device}
    if r.admin_access:
        out["adminAccess"] = True
    if r.tolerations:
        out["tolerations"] = [t.to_json() for t in r.tolerations]
    if r.binding_conditions:
        out["bindingConditions"] = list(r.binding_conditions)
    if r.binding_failure_conditions:
        out["bindingFailureConditions"] = list(r.binding_failure_conditions)
    if r.share_id is not None:
        out["shareID"] = r.share_id
    if r.consumed_capacity:
        out["consumedCapacity"] = {k: str(v) for k, v in r.consumed_capacity.items()}
    return out


def allocation_to_json(a: Allocation) -> dict[str, Any]:
    devices: dict[str, Any] = {"results": [result_to_json(r) for r in a.results]}
    if a.config:
        devices["config"] = [
            {"source": c.source, **({"requests": list(c.requests)} if c.requests else {}), "opaque": c.opaque.to_json()}
            for c in a.config
        ]
    out: dict[str, Any] = {"devices": devices}
    if a.node_selector is not None:
        out["nodeSelector"] = a.node_selector.to_json()
    return out
