"""The HTTP surface: extender webhooks, health, readiness and metrics (FastAPI, raw bodies)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .admission import Admission
from .extender import Extender, run_verb
from .limits import DEFAULT_MAX_BODY
from .metrics import Metrics

JSON = "application/json"


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes before holding them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {int(declared)} bytes is over the limit of {limit} bytes")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
    return bytes(buf)


def health_app(metrics: Metrics, unsynced: Callable[[], list[str]], problems: Callable[[], list[str]],
               ui: Callable[[FastAPI], None] | None = None) -> FastAPI:
    """/healthz, /readyz and /metrics: what the metrics port serves."""
    app = FastAPI(title="tessera", docs_url=None, redoc_url=None, openapi_url=None)
    _add_health(app, metrics, unsynced, problems)
    if ui is not None:
        ui(app)
    return app


def _add_health(app: FastAPI, metrics: Metrics, unsynced: Callable[[], list[str]],
                problems: Callable[[], list[str]]) -> None:
    @app.get("/healthz")
    async def healthz() -> Response:
        bad = problems()
        if bad:
            return Response("unhealthy: " + "; ".join(bad) + "\n", status_code=500, media_type="text/plain")
        return Response("ok\n", media_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        waiting = unsynced()
        if waiting:
            return Response("not ready: informers not synced: " + ", ".join(waiting) + "\n", status_code=503,
                            media_type="text/plain")
        return Response("ok\n", media_type="text/plain")

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def extender_app(ext: Extender, metrics: Metrics, unsynced: Callable[[], list[str]],
                 problems: Callable[[], list[str]], max_body: int = DEFAULT_MAX_BODY,
                 admission: Admission | None = None, ui: Callable[[FastAPI], None] | None = None) -> FastAPI:
    """The extender webhooks at /filter, /prioritize, /bind, /preempt, the admission webhook at
    /mutate (with `admission`), plus health and metrics. A body over `max_body` bytes is refused
    with 413 before it is read whole."""
    app = FastAPI(title="tessera", docs_url=None, redoc_url=None, openapi_url=None)

    async def answer(verb: str, request: Request) -> Response:
        try:
            raw = await read_body(request, max_body)
        except BodyTooLarge as e:
            return Response(orjson.dumps({"Error": f"{verb}: {e} (--max-request-bytes)"}), status_code=413, media_type=JSON)
        work = {"filter": lambda: ext.filter(raw), "prioritize": lambda: ext.prioritize(raw),
                "bind": lambda: ext.bind(raw), "preempt": lambda: ext.preempt(raw)}[verb]
        status, body = await run_verb(verb, metrics, work)
        return Response(body, status_code=status, media_type=JSON)

    @app.post("/filter")
    async def filter_(request: Request) -> Response:
        return await answer("filter", request)

    @app.post("/prioritize")
    async def prioritize(request: Request) -> Response:
        return await answer("prioritize", request)

    @app.post("/bind")
    async def bind(request: Request) -> Response:
        return await answer("bind", request)

    @app.post("/preempt")
    async def preempt(request: Request) -> Response:
        return await answer("preempt", request)

    if admission is not None:
        _add_mutate(app, admission, metrics, max_body)

    _add_health(app, metrics, unsynced, problems)
    if ui is not None:
        ui(app)
    return app


def admission_app(admission: Admission, metrics: Metrics, max_body: int = DEFAULT_MAX_BODY) -> FastAPI:
    """The admission webhook alone (`--admission-port`): /mutate, and /healthz for probes."""
    app = FastAPI(title="tessera-admission", docs_url=None, redoc_url=None, openapi_url=None)
    _add_mutate(app, admission, metrics, max_body)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    return app


def _add_mutate(app: FastAPI, admission: Admission, metrics: Metrics, max_body: int) -> None:
    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
        try:
            raw = await read_body(request, max_body)
        except BodyTooLarge as e:
            return Response(orjson.dumps({"Error": f"mutate: {e} (--max-request-bytes)"}), status_code=413,
                            media_type=JSON)
        status, body = await run_verb("mutate", metrics, lambda: admission.mutate(raw))
        return Response(body, status_code=status, media_type=JSON)
