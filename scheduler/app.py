"""The HTTP surface: extender webhooks, health, readiness and metrics (FastAPI, raw bodies)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .extender import Extender, run_verb
from .metrics import Metrics

JSON = "application/json"


def health_app(metrics: Metrics, unsynced: Callable[[], list[str]], problems: Callable[[], list[str]]) -> FastAPI:
    """/healthz, /readyz and /metrics: what the metrics port serves."""
    app = FastAPI(title="tessera", docs_url=None, redoc_url=None, openapi_url=None)
    _add_health(app, metrics, unsynced, problems)
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
                 problems: Callable[[], list[str]]) -> FastAPI:
    """The extender webhooks at /filter, /prioritize, /bind, /preempt, plus health and metrics."""
    app = FastAPI(title="tessera", docs_url=None, redoc_url=None, openapi_url=None)

    async def answer(verb: str, request: Request) -> Response:
        raw = await request.body()
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

    _add_health(app, metrics, unsynced, problems)
    return app
