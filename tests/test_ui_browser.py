"""The web UI in a real headless browser: Debian's chromium (/usr/bin/chromium, which `make test`
installs where missing) driven by Playwright for Python; Playwright downloads nothing. Screenshots
go to tests/artifacts/ (git-ignored): look at them. Every wait is for a state of the page, never
for a duration."""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from scheduler.loader import Doc, load_inputs
from scheduler.simulate import simulate
from scheduler.state import ClusterState
from scheduler.ui import LiveSource, SimulationSource
from scheduler.uiapi import build_map, snapshot_of_simulation
from tests.builders import exact, nvlink_fleet, pod, template
from tests.live import gpu_cluster, live
from tests.test_ui_api import serving

pytestmark = pytest.mark.asyncio
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = pathlib.Path(__file__).parent / "artifacts"
EXAMPLES = pathlib.Path(__file__).parent.parent / "examples" / "topology"
WAIT_MS = 60_000  # a cap for a failing run on a loaded machine, never a speed the test needs

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed (pip install -e '.[dev]')")
expect = playwright_api.expect
expect.set_options(timeout=WAIT_MS)
if shutil.which(CHROMIUM) is None:
    pytest.skip(f"{CHROMIUM} is missing and could not be installed (make browser: apt-get install -y chromium)",
                allow_module_level=True)


@pytest_asyncio.fixture
async def page() -> AsyncIterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = await browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.errors = errors
        try:
            yield pg
        finally:
            await browser.close()
    assert not errors, errors


def topology_source() -> SimulationSource:
    inputs = load_inputs(EXAMPLES / "cluster.yaml", EXAMPLES / "workload.yaml", "strict")
    return SimulationSource(simulate(inputs.cluster, inputs.workload))


async def test_map_shows_every_device_and_owner_of_a_known_cluster(page: Any) -> None:
    async with serving(topology_source()) as base:
        await page.goto(base + "/ui/")
        await expect(page.locator("#map .cell")).to_have_count(112)
        assert await page.locator("#owners button").count() == 7
        assert await page.locator("#map .cell[data-owner='-1']").count() == 112 - 51
        assert "26 nodes · 112 devices · 61 free · 51 allocated" in await page.inner_text("#totals")
        assert await page.locator("#map .chip").count() == 64
        await page.screenshot(path=str(ARTIFACTS / "ui-map.png"), full_page=True)
        # Clicking a workload highlights all its devices and dims the rest.
        await page.locator("#owners button", has_text="gang ml/pretrain").click()
        await expect(page.locator("#map .cell.hl")).to_have_count(16)
        assert await page.locator("#map .cell.hl[data-device^='gpu.example.com/nvl-a-']").count() == 16
        await page.screenshot(path=str(ARTIFACTS / "ui-map-highlight.png"), full_page=True)
        # Hover shows a device's attributes and owner.
        await page.locator("#map .cell[data-device='gpu.example.com/hgx-1/gpu-0']").hover()
        await page.wait_for_selector("#details h4:text('gpu.example.com/hgx-1/gpu-0')")
        details = await page.inner_text("#details")
        assert "gang ml/finetune" in details and "capacity" in details
        # Clicking it again clears the highlight; the DeviceClass filter dims devices of other classes.
        await page.locator("#owners button", has_text="gang ml/pretrain").click()
        await expect(page.locator("#map .cell.hl")).to_have_count(0)
        await page.select_option("#f-class", "tpu")
        await expect(page.locator("#map .cell.dim")).to_have_count(48)


async def test_stuck_gang_shows_its_blocker_and_explains(page: Any) -> None:
    async with serving(topology_source()) as base:
        await page.goto(base + "/ui/")
        await page.click("#tab-gangs")
        row = page.locator("#gangs tr[data-gang='ml/too-wide']")
        await row.locator(".blocker").first.wait_for()
        assert await row.locator(".state").inner_text() == "pending"
        blockers = await row.locator(".blocker").all_inner_texts()
        assert blockers[0] == "gpu.clique=cluster1.nvl-b: 4 of 5 pods fit, 4 devices short"
        assert "held by pod ml/pretrain-0" in blockers[1]
        await page.screenshot(path=str(ARTIFACTS / "ui-gangs.png"), full_page=True)
        await row.locator("button", has_text="Explain").click()
        await page.wait_for_selector("#explain-domains")
        assert await page.inner_text("#verdict") == "unschedulable"
        assert "too small for the gang" in await page.inner_text("#explanation")
        await page.screenshot(path=str(ARTIFACTS / "ui-explain.png"), full_page=True)
        await page.click("#tab-pools")
        await page.wait_for_selector("#pools tr[data-pool='gpu.example.com/hgx-1']")
        await page.screenshot(path=str(ARTIFACTS / "ui-pools.png"), full_page=True)


async def test_keyboard_only(page: Any) -> None:
    async with serving(topology_source()) as base:
        await page.goto(base + "/ui/")
        await page.wait_for_selector("#map .node")
        # Tabs: arrow keys move between them.
        await page.focus("#tab-map")
        await page.keyboard.press("ArrowRight")
        await page.wait_for_selector("#view-gangs:not([hidden])")
        await page.keyboard.press("ArrowLeft")
        await page.wait_for_selector("#view-map:not([hidden])")
        # A node: focus it with the keyboard, Enter shows its devices.
        await page.focus("#map .node[data-node='hgx-0']")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#details h3:text('node hgx-0')")
        assert await page.locator("#details h4").count() == 8
        # Explain from the keyboard.
        await page.click("#tab-explain")
        await page.fill("#explain-pod", "ml/notebook-0")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#verdict.fits")


def big_cluster(zones: int, racks: int, per_rack: int, gpus_per_node: int) -> list[Doc]:
    return [Doc(o, f"generated[{k}]") for k, o in enumerate(nvlink_fleet(zones, racks, per_rack, gpus_per_node))]


async def test_1000_nodes_render_aggregated_and_zoom(page: Any) -> None:
    cluster = big_cluster(4, 25, 10, 8)
    workload_objs = [template("gpu-8", exact("dev", count=8))] + [pod(f"w{i}", templates={"dev": "gpu-8"}) for i in range(300)]
    workload = [Doc(o, f"w[{k}]") for k, o in enumerate(workload_objs)]
    result = simulate(cluster, workload)
    size = len(orjson.dumps(build_map(snapshot_of_simulation(result))))
    assert size < 2_000_000, f"the map of 1,000 nodes x 8 GPUs is {size} bytes"
    async with serving(SimulationSource(result)) as base:
        t0 = time.perf_counter()
        await page.goto(base + "/ui/")
        await page.wait_for_selector("#map .domain.collapsed")
        rendered = time.perf_counter() - t0
        # 1,000 nodes: four zones of 250 nodes, each one summary tile until zoomed into.
        assert await page.locator("#map .domain.collapsed").count() == 4
        assert await page.locator("#map .node").count() == 0
        await page.screenshot(path=str(ARTIFACTS / "ui-1000-nodes.png"), full_page=True)
        await page.focus("#map .domain.collapsed[data-domain='zone=z1']")
        await page.keyboard.press("Enter")
        await expect(page.locator("#map .node")).to_have_count(250)
        assert await page.locator("#map .cell").count() == 2000
        await page.screenshot(path=str(ARTIFACTS / "ui-1000-nodes-zoomed.png"))
        await page.keyboard.press("Escape")
        await expect(page.locator("#map .domain.collapsed")).to_have_count(4)
        (ARTIFACTS / "ui-1000-nodes.txt").write_text(f"map JSON {size} bytes; first render {rendered:.2f} s\n")


async def test_unsynced_cache_says_so(page: Any) -> None:
    state = ClusterState()
    source = LiveSource(state, "tessera", lambda: False, lambda: ["ResourceSlice"])
    async with serving(source) as base:
        await page.goto(base + "/ui/")
        await page.wait_for_selector("#unsynced:not([hidden])")
        assert "Waiting for Tessera's cache to sync with the cluster (ResourceSlice)" in await page.inner_text("#unsynced")
        await page.screenshot(path=str(ARTIFACTS / "ui-unsynced.png"))
    await state.engine.close()


async def test_a_pod_placed_while_the_page_is_open_appears_without_reload(page: Any) -> None:
    async with live(gpu_cluster(2, per_node=4)) as (api, service):
        source = LiveSource(service.state, "tessera", service.ready, service.unsynced)
        async with serving(source) as base:
            await page.goto(base + "/ui/")
            await expect(page.locator("#map .cell")).to_have_count(8)
            assert await page.locator("#owners button").count() == 0
            navigations: list[str] = []
            page.on("framenavigated", lambda f: navigations.append(f.url))
            api.create(template("three", exact("dev", count=3)))
            api.create(pod("trainer", templates={"dev": "three"}))
            await page.wait_for_selector("#owners button:has-text('pod default/trainer')")
            await expect(page.locator("#map .cell:not([data-owner=\"-1\"])")).to_have_count(3)
            assert navigations == []  # no reload
            await page.screenshot(path=str(ARTIFACTS / "ui-live.png"), full_page=True)
            assert "live cluster" in await page.inner_text("#source")
    await asyncio.sleep(0)
