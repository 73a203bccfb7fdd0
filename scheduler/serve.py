"""`tessera serve`: the service on two ports until SIGTERM (extender + health on one, health and
metrics on the other), shutting down cleanly: the lease is handed back and writes in flight end.

The metrics port runs in a thread of its own, with its own event loop: the kubelet's probes and
Prometheus get answers while a long decision holds the main loop. The extender port is HTTPS
when `run` is given a `ServingTLS` (scheduler/tls.py), whose files are watched for rotation;
the metrics port is always plain HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from .app import admission_app, extender_app, health_app
from .kube import Kube, KubeCollector, StartupError
from .limits import DEFAULT_BURST, DEFAULT_QPS
from .service import Options, Service
from .tls import ServingTLS, TLSFileError
from .ui import LiveSource, add_ui

log = logging.getLogger("tessera.serve")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM and stops both servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: FastAPI, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> uvicorn.Config:
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
    if ssl_context is not None:
        # uvicorn builds its own context from file names in load(); Server.startup passes
        # config.ssl to loop.create_server, and does not load a config twice: ours replaces its.
        config.load()
        config.ssl = ssl_context
    return config


async def start_http(app: FastAPI, host: str, port: int,
                     ssl_context: ssl.SSLContext | None = None) -> tuple[_Server, asyncio.Task[None], int]:
    """Serves `app` in the running loop (over TLS with `ssl_context`); returns the server, its task
    and the bound port."""
    server = _Server(_config(app, host, port, ssl_context))
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


async def run(options: Options, kubeconfig: str | None, host: str, port: int, metrics_port: int,
              tls: ServingTLS | None = None, ui: bool = True, admission_port: int = 0,
              qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST) -> int:
    """Serves until SIGTERM; the extender port over HTTPS with `tls`, else plain HTTP; with `ui`,
    also the web UI (/ui/) and its API (/api/v1/) on that port. With `admission_port`, the gang
    admission webhook also on that port, over the same certificate without client certificates
    (the API server presents none)."""
    for p in {port, metrics_port, admission_port} - {0}:
        _free(host, p)
    if tls is not None:
        # Replicas forward /bind to the leader over the same TLS, presenting their own certificate.
        try:
            options = dataclasses.replace(options, forward_ssl=tls.peer_context())
        except TLSFileError as e:  # the files changed since they were checked
            raise StartupError(str(e)) from None
    kube = await Kube.connect(kubeconfig, qps=qps, burst=burst)
    try:
        await kube.check()
    except StartupError:
        await kube.close()
        raise
    service = Service(kube, options)
    service.metrics.registry.register(KubeCollector(kube))  # the client's requests, waits and retries
    await service.start()
    mount = functools.partial(add_ui, source=LiveSource(service.state, options.scheduler_name, service.ready,
                                                        service.unsynced)) if ui else None
    main_app = extender_app(service.extender, service.metrics, service.unsynced, service.problems, options.max_request_bytes,
                            admission=service.admission, ui=mount)
    main, main_task, bound = await start_http(main_app, host, port, tls.context if tls is not None else None)
    tasks = [main_task]
    watcher = asyncio.get_running_loop().create_task(tls.watch()) if tls is not None else None
    servers = [main]
    admission_tls: ServingTLS | None = None
    if admission_port and service.admission is not None:
        if tls is not None:
            admission_tls = ServingTLS(dataclasses.replace(tls.files, client_ca_file=None), tls.interval)
        adm, adm_task, adm_bound = await start_http(admission_app(service.admission, service.metrics,
                                                                  options.max_request_bytes), host, admission_port,
                                                    admission_tls.context if admission_tls is not None else None)
        servers.append(adm)
        tasks.append(adm_task)
        log.info("event=listening what=admission address=%s:%d scheme=%s client_certificates=not-asked", host, adm_bound,
                 "https" if admission_tls is not None else "http")
    admission_watcher = (asyncio.get_running_loop().create_task(admission_tls.watch())
                         if admission_tls is not None else None)
    side: HttpThread | None = None
    if metrics_port != port:
        side = HttpThread(health_app(service.metrics, service.unsynced, service.problems), host, metrics_port)
        side_bound = await side.start()
        log.info("event=listening what=metrics address=%s:%d", host, side_bound)
    log.info("event=listening what=extender address=%s:%d scheme=%s client_certificates=%s", host, bound,
             "https" if tls is not None else "http",
             "required" if tls is not None and tls.files.client_ca_file else "not-asked")
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
    for w in (watcher, admission_watcher):
        if w is not None:
            w.cancel()
    await service.stop()
    await kube.close()
    return 0
