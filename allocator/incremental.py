"""Slice changes applied to a live Session: only the pools they touch are rebuilt.

A changed, added or deleted ResourceSlice changes its pool (and, when it moved, the pool it left).
`update_pools` rebuilds those pools from all their slices and refreshes what was derived from
them: the per-node views of the nodes they reach (a pool shared across nodes drops every view),
those nodes' free-device counts, the topology view's per-device data, and the ledger entries of
the claims allocated from them (removed under the old devices, added again under the new ones,
so that shares, counters and conflicts are judged as a fresh Session judges them: with every
claim holding a device they hold, in the order a fresh Session adds them). Everything
else (other pools, CEL results cached on unchanged devices, per-pod-shape node filters) stays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from .model import Claim, DeviceKey, ObjectKey, PoolKey, ResourceSlice
from .placement import Session
from .topology_view import TopologyView


def update_pools(session: Session, changed: Mapping[PoolKey, Iterable[ResourceSlice]],
                 original: Callable[[ObjectKey], Claim | None] | None = None) -> set[str] | None:
    """Rebuilds the pools in `changed` from these slices (none: the pool is gone). `original`
    gives a claim as it was recorded (before this Session marked it conflicting); by default the
    Session's own. Returns the nodes whose devices changed (None: possibly any)."""
    cluster = session.cluster
    pools = cluster.pools
    keys = set(changed)
    old_devices = [d for k in keys if (p := pools.pools.get(k)) is not None for d in p.devices]
    affected = sorted(_affected(session, keys))
    held = {k: session.claims[k] for k in affected}
    for k in affected:
        session.remove_claim(k)  # under the old devices, as they were added
    touched = pools.replace(changed)
    new_devices = [d for k in keys if (p := pools.pools.get(k)) is not None for d in p.devices]
    cluster.free.refresh(touched)
    if not cluster.topology.replace_devices(old_devices, new_devices):
        cluster.topology = TopologyView(cluster.topology.config, cluster.nodes, pools)
    for k in affected:
        c = original(k) if original is not None else None
        session.add_claim(c if c is not None else held[k])
    return touched


def _affected(session: Session, keys: set[PoolKey]) -> set[ObjectKey]:
    """The claims allocated from these pools, and (transitively) every claim holding a device
    one of them holds: who holds a device first decides which claim conflicts."""
    holders: dict[DeviceKey, list[ObjectKey]] = {}
    devices_of: dict[ObjectKey, list[DeviceKey]] = {}
    todo: list[ObjectKey] = []
    for k, c in session.claims.items():
        if c.allocation is None:
            continue
        mine = [r.key for r in c.allocation.results if not r.admin_access]
        devices_of[k] = mine
        for dk in mine:
            holders.setdefault(dk, []).append(k)
        if any(dk[:2] in keys for dk in mine):
            todo.append(k)
    seen = set(todo)
    while todo:
        for dk in devices_of[todo.pop()]:
            for other in holders[dk]:
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
    return seen
