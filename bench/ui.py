"""The web UI at 1,000 nodes x 8 GPUs (4 zones x 25 NVLink domains x 10 nodes, 300 8-GPU pods placed
by simulate): the time to build the map document (`/api/v1/map`, what the page polls), its size,
and the page's first render in Debian's chromium (headless, through Playwright; skipped when the
browser is not installed), from navigation to the aggregated zones on screen.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from typing import Any

import orjson

from scheduler.loader import Doc
from scheduler.simulate import simulate
from scheduler.uiapi import build_map, snapshot_of_simulation
from tests.builders import exact, nvlink_fleet, pod, template

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def fleet(zones: int, racks: int, per_rack: int, gpus_per_node: int, pods: int) -> tuple[list[Doc], list[Doc]]:
    docs = nvlink_fleet(zones, racks, per_rack, gpus_per_node)
    work = [template("gpu-8", exact("dev", count=8)), *(pod(f"w{k}", templates={"dev": "gpu-8"}) for k in range(pods))]
    return ([Doc(o, f"cluster[{k}]") for k, o in enumerate(docs)], [Doc(o, f"workload[{k}]") for k, o in enumerate(work)])


async def _render(result: Any) -> float | None:
    if shutil.which(CHROMIUM) is None:
        return None
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        return None
    from scheduler.ui import SimulationSource
    from tests.test_ui_api import serving

    async with serving(SimulationSource(result)) as base, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            t0 = time.perf_counter()
            await page.goto(base + "/ui/")
            await page.wait_for_selector("#map .domain.collapsed", timeout=120_000)
            return time.perf_counter() - t0
        finally:
            await browser.close()


def run(quick: bool = False) -> dict[str, Any]:
    zones, racks = (2, 5) if quick else (4, 25)
    cluster, workload = fleet(zones, racks, 10, 8, 60 if quick else 300)
    result = simulate(cluster, workload)
    snap = snapshot_of_simulation(result)
    times = []
    doc: Any = None
    for _ in range(5):
        t0 = time.perf_counter()
        doc = build_map(snap)
        times.append(time.perf_counter() - t0)
    size = len(orjson.dumps(doc))
    rendered = asyncio.run(_render(result))
    return {"nodes": zones * racks * 10, "devices": zones * racks * 80, "map_ms_p50": round(statistics.median(times) * 1000, 1),
            "map_kb": round(size / 1024, 1), "first_render_s": None if rendered is None else round(rendered, 2)}


if __name__ == "__main__":
    print(orjson.dumps(run(), option=orjson.OPT_INDENT_2).decode())
