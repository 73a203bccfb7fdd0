"""The garbage collector's pause during fleet reads: overlapping reads (several informers listing
at once) keep it paused until the last one ends, and it comes back only if it was on."""

from __future__ import annotations

import gc

from scheduler.gcpause import collector_paused


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
