"""Volcano's enqueue, for Volcano PodGroups of Tessera's schedulers: a Volcano Job's controller
creates its pods only once the Job's PodGroup is `Inqueue`, which Volcano's scheduler sets when
the group's `minResources` fit in what the cluster has idle. Without Volcano's scheduler nobody
would, and the Job would never start. So the leader admits every Volcano PodGroup that has no
members yet, is `Pending` (or has no phase), and whose `minResources` fit
(`allocator.gang.enqueue_problem`, decided on the engine thread); one that does not fit gets
Volcano's `Unschedulable` condition saying why, and is checked again when the cluster frees
capacity (a pod bound elsewhere finishing or going, a node added or changed). Groups with members
are the secondary scheduler's (and the gang planner's) to report on.

A PodGroup names no scheduler, so this admits every Volcano PodGroup in the cluster: where
Volcano's own scheduler runs too (its queues deciding admission), turn it off with
`--no-volcano-enqueue`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from allocator.gang import enqueue_problem
from allocator.model import VOLCANO_API, GroupKey, PodGroup

from .resources import GROUP_KINDS
from .state import ClusterState
from .writer import GroupReport, Writer

log = logging.getLogger("tessera.enqueue")
Obj = dict[str, Any]


class Enqueuer:
    def __init__(self, state: ClusterState, writer: Writer, leading: Callable[[], bool]) -> None:
        self.state = state
        self.writer = writer
        self.leading = leading
        self._checking: set[GroupKey] = set()
        self._said: dict[GroupKey, str | None] = {}
        state.listeners.append(self.on_event)

    def pending(self) -> list[GroupKey]:
        """Volcano PodGroups with no members that are not admitted yet."""
        return [gkey for gkey in self.state.raw_groups if self._is_pending(gkey)]

    def _is_pending(self, gkey: GroupKey) -> bool:
        raw = self.state.raw_groups.get(gkey)
        return (raw is not None and gkey[0] == VOLCANO_API and isinstance(self.state.groups.get(gkey), PodGroup)
                and str((raw.get("status") or {}).get("phase") or "Pending") == "Pending"
                and not self.state.members(gkey))

    def on_event(self, kind: str, event: str, obj: Obj, old: Obj | None) -> None:
        if not self.leading():
            return
        if GROUP_KINDS.get(kind) == VOLCANO_API:
            if event == "DELETED":
                self._said.pop((VOLCANO_API, *_key(obj)), None)
                return
            gkey: GroupKey = (VOLCANO_API, *_key(obj))
            if self._is_pending(gkey):
                self._start(gkey)
        elif kind == "Node" or (kind == "Pod" and (event == "DELETED" or _phase(obj) in ("Succeeded", "Failed"))):
            for gkey in self.pending():
                self._start(gkey)

    def sync(self) -> None:
        """On gaining leadership: every group waiting to be admitted."""
        self._said.clear()
        for gkey in self.pending():
            self._start(gkey)

    def _start(self, gkey: GroupKey) -> None:
        """Decides the pending group's admission in the background, once at a time per group."""
        if gkey not in self._checking:
            self._checking.add(gkey)
            self.writer.spawn(self._admit(gkey))

    async def _admit(self, gkey: GroupKey) -> None:
        try:
            group = self.state.groups.get(gkey)
            if not isinstance(group, PodGroup):
                return
            problem = await self.state.engine.run(lambda _: enqueue_problem(self.state.session(), group))
            if not self._is_pending(gkey) or self._said.get(gkey, "") == problem:
                return
            if problem is None:
                report = GroupReport("waiting", f"PodGroup {gkey[1]}/{gkey[2]} admitted: waiting for its pods",
                                     "members", group.min_member)
            else:
                report = GroupReport("unschedulable", problem, "", group.min_member)
            if await self.writer.group_status(gkey, report):
                self._said[gkey] = problem
                log.info("event=podgroup-enqueued group=%s/%s admitted=%s reason=%r", gkey[1], gkey[2],
                         problem is None, problem or "")
        finally:
            self._checking.discard(gkey)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _phase(obj: Obj) -> str:
    return str((obj.get("status") or {}).get("phase") or "")
