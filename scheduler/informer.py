"""Informers: list, then watch, forever, delivering each object change exactly once.

A reflector lists a resource in pages (`limit`, then `continue`, as client-go's reflector does),
handing each page to its store as it arrives, so that a fleet's JSON is never held at once; after
the last page the store deletes what the list no longer had (adds, updates and deletes against
what it held). A 410 on a continue token (the snapshot was compacted) restarts the list. It then
watches from the list's resourceVersion with
bookmarks, resuming from the last version it saw whenever a stream ends. A 410 Gone (history
compacted) or a failed request starts over with a fresh list, after a backoff that doubles up to
a limit. The store ignores events that are not newer than what it holds, so a relist or a
replayed event never applies a change twice. An optional resource (a CRD) that the server does
not serve is skipped with one warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .gcpause import collector_paused
from .kube import Kube, KubeError
from .metrics import Metrics
from .resources import Resource

log = logging.getLogger("tessera.informer")
Obj = dict[str, Any]
Handler = Callable[[str, str, Obj, Obj | None], None]  # (kind, ADDED|MODIFIED|DELETED, object, previous)


def object_key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def rv_int(obj: Obj) -> int:
    rv = (obj.get("metadata") or {}).get("resourceVersion") or "0"
    return int(rv) if str(rv).isdigit() else 0


# Kinds whose handlers keep their own parsed model and never need the raw object again (no
# handler reads a previous Node or slice): the store keeps only their identity (kind, name,
# resourceVersion), not a fleet's worth of device JSON or of node status (kubelet's images and
# conditions are most of a Node: about 10 KB of JSON each).
IDENTITY_ONLY = frozenset({"ResourceSlice", "Node"})


def identity(obj: Obj) -> Obj:
    """What the store keeps of an IDENTITY_ONLY object (and hands to a handler as `previous`)."""
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "generation") if k in meta}
    return {k: v for k, v in (("apiVersion", obj.get("apiVersion")), ("kind", obj.get("kind"))) if v is not None} | \
        {"metadata": kept}


class Store:
    """The objects of one resource, by (namespace, name), newest version wins."""

    def __init__(self, resource: Resource, handler: Handler) -> None:
        self.resource = resource
        self.handler = handler
        self.objects: dict[tuple[str, str], Obj] = {}
        self._keep: Callable[[Obj], Obj] | None = identity if resource.kind in IDENTITY_ONLY else None

    def replace(self, items: list[Obj]) -> None:
        """A fresh list: what is gone was deleted, what is new or newer was added or changed."""
        fresh = {object_key(o): o for o in items}
        self.deleted_since(fresh)
        for obj in fresh.values():
            self.apply("ADDED", obj)

    def listed(self, items: list[Obj], seen: set[tuple[str, str]]) -> None:
        """One page of a fresh list: adds or changes its objects, noting them in `seen`."""
        for obj in items:
            seen.add(object_key(obj))
            self.apply("ADDED", obj)

    def deleted_since(self, seen: set[tuple[str, str]] | dict[tuple[str, str], Obj]) -> None:
        """The list is complete: what it did not have was deleted."""
        for key in [k for k in self.objects if k not in seen]:
            old = self.objects.pop(key)
            self.handler(self.resource.kind, "DELETED", old, old)

    def apply(self, event: str, obj: Obj) -> None:
        key = object_key(obj)
        old = self.objects.get(key)
        if event == "DELETED":
            if old is None:
                return
            del self.objects[key]
            self.handler(self.resource.kind, "DELETED", obj, old)
            return
        if old is not None and rv_int(old) >= rv_int(obj) and rv_int(obj):
            return  # already seen (a replay after a resume or relist)
        self.objects[key] = obj if self._keep is None else self._keep(obj)
        self.handler(self.resource.kind, "ADDED" if old is None else "MODIFIED", obj, old)


PAGE_SIZE = 500  # client-go's reflector lists in pages of 500 (pager.defaultPageSize)


class Reflector:
    def __init__(self, kube: Kube, resource: Resource, handler: Handler, metrics: Metrics,
                 watch_timeout: int = 300, max_backoff: float = 30.0,
                 quiet: Callable[[], Awaitable[None]] | None = None, page_size: int = PAGE_SIZE) -> None:
        self.kube = kube
        self.page_size = page_size
        self.quiet = quiet  # awaited before the store changes: the handler must not race a running decision
        self.resource = resource
        self.store = Store(resource, handler)
        self.metrics = metrics
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.synced = asyncio.Event()
        self.absent = False  # an optional resource the server does not serve
        self.resource_version = ""

    async def run(self) -> None:
        backoff = 0.2
        kind = self.resource.kind
        while True:
            try:
                await self._list()
                backoff = 0.2
                await self._watch()
            except KubeError as e:
                if e.not_found and self.resource.optional and not self.synced.is_set():
                    log.warning("resource=%s event=absent msg=%r", kind, "not served by the API server; skipping it")
                    self.absent = True
                    self.synced.set()
                    return
                self.metrics.relists.labels(kind).inc()
                if e.gone:
                    log.info("resource=%s event=relist reason=gone", kind)
                    continue  # history compacted: relist at once
                log.warning("resource=%s event=relist reason=%r backoff=%.1f", kind, e.message, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    async def _list(self) -> None:
        """Lists page by page; each page's objects reach the store (and the handler) before the
        next page is asked for. The list's resourceVersion is the snapshot's, which every page
        carries. A continue token that expired (410) starts the list over."""
        kind = self.resource.kind
        with collector_paused():  # across the pages too: decoding them builds as much as storing them
            seen, meta = await self._pages()
        self.resource_version = str(meta.get("resourceVersion") or "")
        if self.quiet is not None:
            await self.quiet()
        self.store.deleted_since(seen)
        self.metrics.informer_events.labels(kind, "LIST").inc()
        self.synced.set()

    async def _pages(self) -> tuple[set[tuple[str, str]], Obj]:
        """Every page into the store: the keys listed, and the last page's metadata."""
        kind = self.resource.kind
        while True:
            seen: set[tuple[str, str]] = set()
            token = ""
            try:
                while True:
                    query: dict[str, object] = {"limit": self.page_size}
                    if token:
                        query["continue"] = token
                    body = await self.kube.list(self.resource.list_path, **query)
                    meta = body.get("metadata") or {}
                    items = list(body.get("items") or [])
                    del body
                    if self.quiet is not None:
                        await self.quiet()
                    self.store.listed(items, seen)
                    del items
                    token = str(meta.get("continue") or "")
                    if not token:
                        break
            except KubeError as e:
                if not (e.gone and token):
                    raise
                log.info("resource=%s event=relist reason=continue-expired", kind)
                self.metrics.relists.labels(kind).inc()
                continue
            return seen, meta

    async def _watch(self) -> None:
        while True:
            async for ev in self.kube.watch(self.resource.list_path, self.resource_version, self.watch_timeout):
                kind = ev.get("type")
                obj = ev.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code") or 0)
                    raise KubeError(code or 500, str(obj.get("message") or "watch error"), str(obj.get("reason") or ""))
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                if kind == "BOOKMARK":
                    self.resource_version = rv or self.resource_version
                    continue
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    if self.quiet is not None:
                        await self.quiet()
                    self.store.apply(kind, obj)
                    self.metrics.informer_events.labels(self.resource.kind, kind).inc()
                if rv:
                    self.resource_version = rv
            # The server ended the stream (its timeout, or a dropped connection): resume.
