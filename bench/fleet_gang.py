"""A 16-pod gang on 10,000 nodes (issue 15): the time for one `allocator.gang.schedule_gang`
decision, in process, including the all-or-nothing commit (released afterwards, so every repeat
sees the same fleet).

The fleet is bench/quality.py's GPU shape grown tenfold: 500 NVLink domains of 18 nodes x 4 GPUs
and 1,000 HGX nodes x 8 GPUs, partly used by 10,000 seeded single pods of 1, 2 or 4 GPUs, so
domains differ; the gang is 16 pods x 4 GPUs. `python -m bench.fleet_gang [NODES]` runs it alone.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench.quality import gang_decision


def run(quick: bool = False) -> dict[str, Any]:
    nodes = 1000 if quick else 10_000
    t = time.perf_counter()
    out = gang_decision(nodes=nodes, pods=16, repeats=5 if quick else 15)
    out["setup_and_run_s"] = round(time.perf_counter() - t, 1)
    return out


if __name__ == "__main__":
    import json

    n = int(sys.argv[1]) if len(sys.argv) >= 2 else 10_000
    print(json.dumps(gang_decision(nodes=n, pods=16, repeats=15), indent=2))
