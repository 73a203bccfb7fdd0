"""The metrics port answers while the main event loop is busy (a long decision)."""

from __future__ import annotations

import threading
import urllib.request

import pytest

from scheduler.app import health_app
from scheduler.serve import HttpThread
from tests.live import gpu_cluster, live

pytestmark = pytest.mark.asyncio


async def test_health_answers_while_the_main_loop_is_blocked() -> None:
    async with live(gpu_cluster(1)) as (_api, svc):
        side = HttpThread(health_app(svc.metrics, svc.unsynced, svc.problems), "127.0.0.1", 0)
        port = await side.start()
        answers: list[tuple[str, int, bytes]] = []
        done = threading.Event()

        def probe() -> None:
            try:
                for path in ("/healthz", "/readyz", "/metrics"):
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as r:
                        answers.append((path, r.status, r.read()))
            finally:
                done.set()

        try:
            threading.Thread(target=probe, daemon=True).start()
            # The main loop is held here, as by a decision: nothing else on it runs until the probes are answered.
            assert done.wait(30), "the probes were not answered while the main loop was busy"
            assert [(p, s) for p, s, _ in answers] == [("/healthz", 200), ("/readyz", 200), ("/metrics", 200)]
            assert b"tessera_" in answers[2][2]
        finally:
            await side.stop()
