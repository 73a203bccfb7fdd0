"""`tessera serve`: the service on two ports until SIGTERM (extender + health on one, health and
metrics on the other), shutting down cleanly: the lease is handed back and writes in flight end.

The metrics port runs in a thread of its own, with its own event loop: the kubelet's probes and
Prometheus get answers while a long decision holds the main loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from .app import extender_app, health_app
from .kube import Kube, StartupError
from .service import Options, Service

log = logging.getLogger("tessera.serve")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM and stops both servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start_http(app: FastAPI, host: str, port: int) -> tuple[_Server, asyncio.Task[None], int]:
    """Serves `app` in the running loop; returns the server, its task and the bound port."""
    server = _Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start (port in use, ...)
            raise RuntimeError(f"HTTP server on {host}:{port} stopped at startup")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, task, int(bound)


class HttpThread:
    """A uvicorn server on its own thread and event loop."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.server = _Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name=f"http-{port}", daemon=True)
        self.port = 0

    async def start(self) -> int:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("HTTP server thread stopped at startup (port in use?)")
            await asyncio.sleep(0.01)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.to_thread(self.thread.join, 10)


def _free(host: str, port: int) -> None:
    """That we can listen on the port, before anything starts."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise StartupError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


async def run(options: Options, kubeconfig: str | None, host: str, port: int, metrics_port: int) -> int:
    for p in {port, metrics_port}:
        _free(host, p)
    kube = await Kube.connect(kubeconfig)
    try:
        await kube.check()
    except StartupError:
        await kube.close()
        raise
    service = Service(kube, options)
    await service.start()
    main_app = extender_app(service.extender, service.metrics, service.unsynced, service.problems, options.max_request_bytes)
    main, main_task, bound = await start_http(main_app, host, port)
    tasks = [main_task]
    servers = [main]
    side: HttpThread | None = None
    if metrics_port != port:
        side = HttpThread(health_app(service.metrics, service.unsynced, service.problems), host, metrics_port)
        side_bound = await side.start()
        log.info("event=listening what=metrics address=%s:%d", host, side_bound)
    log.info("event=listening what=extender address=%s:%d", host, bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopper = loop.create_task(stop.wait())
    await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    log.info("event=stopping")
    for s in servers:
        s.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    if side is not None:
        await side.stop()
    stopper.cancel()
    await service.stop()
    await kube.close()
    return 0
