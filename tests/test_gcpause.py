"""The garbage collector's pause during fleet reads: overlapping reads (several informers listing
at once) keep it paused until the last one ends, and it comes back only if it was on. What the
`tessera` program read is frozen out of later collections; simulate called inside a longer-lived
process (a test) freezes nothing of that process."""

from __future__ import annotations

import gc
import pathlib
import subprocess
import sys

import pytest

from scheduler.gcpause import collector_paused, freeze_model


def test_overlapping_pauses_end_with_the_last_one() -> None:
    assert gc.isenabled()
    first = collector_paused()
    second = collector_paused()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)  # the first read ends while the second still runs
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


FROZEN_AT_EXIT = """
import atexit, gc, sys
atexit.register(lambda: sys.stderr.write(f"\\nfrozen={gc.get_freeze_count()}\\n"))
from scheduler.cli import tessera_main
sys.argv = ["tessera", *sys.argv[1:]]
sys.exit(tessera_main())
"""


def _cluster(tmp_path: pathlib.Path) -> list[str]:
    from bench.scale import write_fleet

    cluster, workload = tmp_path / "cluster.yaml", tmp_path / "workload.yaml"
    write_fleet(cluster, 3, "yaml")
    workload.write_text("")
    return ["simulate", "--cluster", str(cluster), "--workload", str(workload), "--format", "json"]


def test_the_tessera_program_freezes_what_simulate_read(tmp_path: pathlib.Path) -> None:
    proc = subprocess.run([sys.executable, "-c", FROZEN_AT_EXIT, *_cluster(tmp_path)], capture_output=True, text=True,
                          check=False, cwd=pathlib.Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr
    frozen = int(proc.stderr.rsplit("frozen=", 1)[1].split()[0])
    assert frozen > 1000  # the model, the imports and the schemas: everything alive once the files were read


def test_simulate_called_inside_a_longer_lived_process_freezes_nothing(tmp_path: pathlib.Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from scheduler.cli import main

    before = gc.get_freeze_count()
    assert main(_cluster(tmp_path)) == 0
    assert '"pods": []' in capsys.readouterr().out
    assert gc.get_freeze_count() == before


def test_freeze_model_leaves_what_is_alive_out_of_later_collections() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    kept = Cycle()
    before = gc.get_freeze_count()
    freeze_model()
    try:
        assert gc.get_freeze_count() > before
        assert not any(o is kept for o in gc.get_objects())  # no generation holds it any more
    finally:
        gc.unfreeze()
    assert any(o is kept for o in gc.get_objects())


@pytest.mark.asyncio
async def test_serve_freezes_what_it_holds_once_its_informers_synced_when_asked() -> None:
    from scheduler.service import Options
    from tests.live import eventually, gpu_cluster, live

    gc.unfreeze()
    try:
        async with live(gpu_cluster(2), Options(watch_timeout=30)) as _:
            assert gc.get_freeze_count() == 0  # in-process (tests): not asked
        async with live(gpu_cluster(2), Options(watch_timeout=30, freeze_model=True)) as (_, service):
            await eventually(lambda: gc.get_freeze_count() > 0, what="the model frozen")
            assert not any(o is service.state for o in gc.get_objects())  # the cluster state among them
    finally:
        gc.unfreeze()
