"""What is already allocated: the allocator's view of every claim's `status.allocation`.

- Dedicated results (no adminAccess, no shareID) make a device unavailable to other claims.
- Shared results (shareID, from devices with allowMultipleAllocations) add their
  consumedCapacity to the device's running total instead.
- adminAccess results are ignored: they never make a device unavailable.
- A device that holds any allocation charges its `consumesCounters` to its pool, once
  however many shares it serves.

Versions per node let derived indexes (free-device counts) recompute only what changed.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

from .model import Allocation, Device, DeviceKey, DeviceResult, PoolKey, device_key_str
from .pools import PoolIndex

CounterKey = tuple[str, str]  # (counter set, counter)
_LOG_LIMIT = 65536


class Ledger:
    def __init__(self, pools: PoolIndex) -> None:
        self._pools = pools
        self._dedicated: dict[DeviceKey, int] = defaultdict(int)
        self._shares: dict[DeviceKey, int] = defaultdict(int)
        self._consumed: dict[DeviceKey, dict[str, Fraction]] = {}
        self._counters: dict[PoolKey, dict[CounterKey, Fraction]] = {}
        self._local_version: dict[str, int] = defaultdict(int)
        self.network_version = 0
        # Nodes whose devices changed, in order (None: a change any node may see); derived
        # indexes remember how far they have read. Trimmed so that it cannot grow forever.
        self._log: list[str | None] = []
        self._log_base = 0

    # --- queries --------------------------------------------------------------------------

    def in_use(self, key: DeviceKey) -> bool:
        """Dedicated to some claim (shared use and adminAccess do not count)."""
        return self._dedicated.get(key, 0) > 0

    def holds(self, key: DeviceKey) -> bool:
        """Holding any allocation, dedicated or shared (its counters are then charged)."""
        return self._dedicated.get(key, 0) > 0 or self._shares.get(key, 0) > 0

    def share_count(self, key: DeviceKey) -> int:
        return self._shares.get(key, 0)

    def consumed(self, key: DeviceKey, capacity: str) -> Fraction:
        return self._consumed.get(key, {}).get(capacity, Fraction(0))

    def counter_used(self, pool: PoolKey, counter_set: str, counter: str) -> Fraction:
        return self._counters.get(pool, {}).get((counter_set, counter), Fraction(0))

    def version(self, node_name: str) -> tuple[int, int]:
        return (self._local_version.get(node_name, 0), self.network_version)

    def changes_since(self, position: int) -> tuple[int, set[str] | None]:
        """The log position now, and the nodes changed since `position` (None: assume all)."""
        end = self._log_base + len(self._log)
        if position == end:
            return end, set()
        if position < self._log_base:
            return end, None
        changed: set[str] = set()
        for name in self._log[position - self._log_base:]:
            if name is None:
                return end, None
            changed.add(name)
        return end, changed

    @property
    def used_count(self) -> int:
        return sum(1 for v in self._dedicated.values() if v > 0)

    # --- changes --------------------------------------------------------------------------

    def conflicts(self, allocation: Allocation) -> list[str]:
        """Why recording `allocation` would give a device to two claims, in field-path terms."""
        out = []
        for i, r in enumerate(allocation.results):
            if r.admin_access:
                continue
            where = f"status.allocation.devices.results[{i}]"
            device = self._pools.device(r.key)
            if r.share_id is not None and device is not None and not device.allow_multiple_allocations:
                out.append(f"{where}.shareID: device {device_key_str(r.key)} does not allow multiple allocations")
            elif self.in_use(r.key):
                out.append(f"{where}: device {device_key_str(r.key)} is already allocated to another claim")
            elif r.share_id is None and self.share_count(r.key):
                out.append(f"{where}: device {device_key_str(r.key)} is already shared by other claims")
        return out

    def add(self, allocation: Allocation) -> None:
        for r in allocation.results:
            self._apply(r, +1)

    def remove(self, allocation: Allocation) -> None:
        for r in allocation.results:
            self._apply(r, -1)

    def _apply(self, r: DeviceResult, sign: int) -> None:
        if r.admin_access:
            return
        key = r.key
        held_before = self.holds(key)
        device = self._pools.device(key)
        # A share of a device that cannot be shared holds it outright: never hand it out again.
        if r.share_id is not None and (device is None or device.allow_multiple_allocations):
            self._shares[key] += sign
            totals = self._consumed.setdefault(key, {})
            for cap, q in r.consumed_capacity.items():
                totals[cap] = totals.get(cap, Fraction(0)) + sign * q.value
        else:
            self._dedicated[key] += sign
        held_after = self.holds(key)
        if held_before != held_after and device is not None:
            self._charge(device, +1 if held_after else -1)
        self._touch(device)

    def _charge(self, device: Device, sign: int) -> None:
        if not device.consumes_counters:
            return
        pool = self._counters.setdefault((device.driver, device.pool), {})
        for cc in device.consumes_counters:
            for name, q in cc.counters.items():
                k = (cc.counter_set, name)
                pool[k] = pool.get(k, Fraction(0)) + sign * q.value

    def _touch(self, device: Device | None) -> None:
        node = device.access.node_name if device is not None else None
        if node is not None:
            self._local_version[node] += 1
        else:
            # A network-attached device, or one we do not know, can matter to any node.
            self.network_version += 1
        self._log.append(node)
        if len(self._log) > _LOG_LIMIT:
            self._log_base += len(self._log)
            self._log = []
