"""The web UI at `/ui/` and its JSON API at `/api/v1/` (docs/ui.md), for `tessera serve` (the
informer cache) and `tessera simulate --serve` (a finished run).

Plain HTML, CSS and JavaScript from `scheduler/static/`, no build step and nothing fetched from
elsewhere (a Content-Security-Policy of 'self' says so to the browser). Read only: GET only.
Live, every document is computed on the engine's worker thread (`Engine.run`), one at a time
with the decisions, so nothing reads the state while a decision changes it; documents are
cached per cache version (bumped on every informer event), so a page polling `/api/v1/status`
costs nothing while nothing changes. Until every informer has synced, the API answers 503
saying what it waits for, and the page says so.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from .uiapi import (
    BadQuery,
    Obj,
    Snapshot,
    build_gangs,
    build_map,
    build_node,
    build_pending,
    build_pools,
    explain_pod,
    parse_pod_ref,
    snapshot_of_simulation,
    snapshot_of_state,
    status_doc,
)

STATIC = pathlib.Path(__file__).parent / "static"
STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "app.css": "text/css; charset=utf-8"}
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
CACHED_DOCUMENTS = 32
JSON = "application/json"


class NotSynced(Exception):
    """The informer cache has not synced yet: nothing to show."""


class UiSource(Protocol):
    name: str

    def status(self) -> Obj: ...

    async def compute(self, key: tuple[Any, ...], build: Callable[[Snapshot], Obj]) -> Obj: ...


class SimulationSource:
    """A finished `simulate` run: one snapshot; explanations (what-ifs on the run's session) one at a time."""

    name = "simulate"

    def __init__(self, result: Any) -> None:
        self.snapshot = snapshot_of_simulation(result)
        self._lock = asyncio.Lock()
        self._cache: dict[tuple[Any, ...], Obj] = {}

    def status(self) -> Obj:
        return status_doc(self.snapshot.version, True, self.name)

    async def compute(self, key: tuple[Any, ...], build: Callable[[Snapshot], Obj]) -> Obj:
        async with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                hit = await asyncio.to_thread(build, self.snapshot)
                if len(self._cache) >= CACHED_DOCUMENTS:
                    self._cache.clear()
                self._cache[key] = hit
            return hit


class LiveSource:
    """The live informer cache (`ClusterState`), read on the engine's worker thread."""

    name = "live"

    def __init__(self, state: Any, scheduler_name: str, ready: Callable[[], bool], unsynced: Callable[[], Sequence[str]]) -> None:
        self.state = state
        self.scheduler_name = scheduler_name
        self.ready = ready
        self.unsynced = unsynced
        self.version = 1
        self._cache: dict[tuple[Any, ...], Obj] = {}
        self._cache_version = 0
        state.listeners.append(self._changed)

    def _changed(self, kind: str, event: str, obj: Obj, old: Obj | None) -> None:
        self.version += 1

    def status(self) -> Obj:
        synced = self.ready()
        return status_doc(self.version, synced, self.name, [] if synced else list(self.unsynced()))

    async def compute(self, key: tuple[Any, ...], build: Callable[[Snapshot], Obj]) -> Obj:
        if not self.ready():
            raise NotSynced("waiting for the informer cache to sync: " + ", ".join(self.unsynced()))
        version = self.version
        if version == self._cache_version and key in self._cache:
            return self._cache[key]

        def job(_: object) -> tuple[int, Obj]:
            # Read the version on the worker: no informer event applies while a job runs.
            v = self.version
            return v, build(snapshot_of_state(self.state, self.scheduler_name, v, True))

        got: tuple[int, Obj] = await self.state.engine.run(job)
        v, doc = got
        if v != self._cache_version:
            self._cache = {}
            self._cache_version = v
        if len(self._cache) < CACHED_DOCUMENTS:
            self._cache[key] = doc
        return doc


def _json(doc: Obj, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON, headers=HEADERS)


def _error(status: int, message: str, parameter: str | None = None) -> Response:
    doc: Obj = {"apiVersion": "tessera.dev/v1", "kind": "Error", "error": message}
    if parameter is not None:
        doc["parameter"] = parameter
    return _json(doc, status)


def _params(request: Request, allowed: Sequence[str]) -> dict[str, str]:
    """The query parameters, each at most once, none unknown (a typo is a 400, not ignored)."""
    out: dict[str, str] = {}
    for k, v in request.query_params.multi_items():
        if k not in allowed:
            expected = ", ".join(allowed) if allowed else "none"
            raise BadQuery(k, f"unknown parameter; this endpoint takes: {expected}")
        if k in out:
            raise BadQuery(k, "given more than once")
        out[k] = v
    return out


def _optional(params: dict[str, str], name: str) -> str | None:
    v = params.get(name)
    if v is None or v == "":
        return None
    if len(v) > 253 or any(c.isspace() or c in "<>\"'" for c in v):
        raise BadQuery(name, f"{v[:60]!r} is not a Kubernetes name")
    return v


def _int(params: dict[str, str], name: str, default: int) -> int:
    v = params.get(name)
    if v is None or v == "":
        return default
    if not v.isdigit() or len(v) > 6:
        raise BadQuery(name, f"{v[:20]!r} is not a positive integer")
    return int(v)


def add_ui(app: FastAPI, source: UiSource) -> None:
    """Mounts `/ui/` and `/api/v1/` on `app`."""

    async def answer(request: Request, allowed: Sequence[str], key: Callable[[dict[str, str]], tuple[Any, ...]],
                     build: Callable[[dict[str, str]], Callable[[Snapshot], Obj]]) -> Response:
        try:
            params = _params(request, allowed)
            k = key(params)
            return _json(await source.compute(k, build(params)))
        except BadQuery as e:
            return _error(400, str(e), e.parameter)
        except NotSynced as e:
            return _error(503, str(e))

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/ui/", include_in_schema=False)
    async def ui_index() -> Response:
        return _static("index.html")

    @app.get("/ui/static/{name}", include_in_schema=False)
    async def ui_static(name: str) -> Response:
        if name not in STATIC_FILES:
            return Response("not found\n", status_code=404, media_type="text/plain", headers=HEADERS)
        return _static(name)

    @app.get("/api/v1/status")
    async def api_status(request: Request) -> Response:
        try:
            _params(request, ())
        except BadQuery as e:
            return _error(400, str(e), e.parameter)
        return _json(source.status())

    @app.get("/api/v1/map")
    async def api_map(request: Request) -> Response:
        def key(p: dict[str, str]) -> tuple[Any, ...]:
            return ("map", _optional(p, "namespace"), _optional(p, "class"))

        def build(p: dict[str, str]) -> Callable[[Snapshot], Obj]:
            ns, cls = _optional(p, "namespace"), _optional(p, "class")
            return lambda s: build_map(s, ns, cls)

        return await answer(request, ("namespace", "class"), key, build)

    @app.get("/api/v1/node")
    async def api_node(request: Request) -> Response:
        def key(p: dict[str, str]) -> tuple[Any, ...]:
            name = _optional(p, "name")
            if name is None:
                raise BadQuery("name", "missing; expected a node name")
            return ("node", name)

        return await answer(request, ("name",), key, lambda p: lambda s: build_node(s, p["name"]))

    @app.get("/api/v1/gangs")
    async def api_gangs(request: Request) -> Response:
        return await answer(request, (), lambda p: ("gangs",), lambda p: build_gangs)

    @app.get("/api/v1/pending")
    async def api_pending(request: Request) -> Response:
        return await answer(request, ("namespace",), lambda p: ("pending", _optional(p, "namespace")),
                            lambda p: lambda s: build_pending(s, _optional(p, "namespace")))

    @app.get("/api/v1/pools")
    async def api_pools(request: Request) -> Response:
        return await answer(request, (), lambda p: ("pools",), lambda p: build_pools)

    @app.get("/api/v1/explain")
    async def api_explain(request: Request) -> Response:
        def key(p: dict[str, str]) -> tuple[Any, ...]:
            return ("explain", parse_pod_ref(p.get("pod")), _int(p, "limit", 10))

        def build(p: dict[str, str]) -> Callable[[Snapshot], Obj]:
            pod, limit = parse_pod_ref(p.get("pod")), _int(p, "limit", 10)
            return lambda s: explain_pod(s, pod, limit)

        return await answer(request, ("pod", "limit"), key, build)


def _static(name: str) -> Response:
    try:
        body = (STATIC / name).read_bytes()
    except OSError as e:  # a broken install: say which file
        return Response(f"UI file {name} is missing from the installation: {e.strerror or e}\n", status_code=500,
                        media_type="text/plain", headers=HEADERS)
    return Response(body, media_type=STATIC_FILES[name], headers=HEADERS)


def ui_app(source: UiSource) -> FastAPI:
    """A FastAPI app serving only the UI and its API (`tessera simulate --serve`)."""
    app = FastAPI(title="tessera", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    add_ui(app, source)
    return app
