"""Limits and defaults the CLI shows, in a module light enough for it to import without the
service (the API client alone pulls in aiohttp and the Kubernetes models)."""

from __future__ import annotations

# kube-scheduler's largest real call: ExtenderArgs with full Node objects (nodeCacheCapable: false)
# for 15,000 nodes of about 13 KB each (labels, annotations, conditions, 50 images; measured in
# tests/test_extender.py) is about 200 MB; with NodeNames (Tessera's shipped config) well under 1 MB.
DEFAULT_MAX_BODY = 512 * 1024 * 1024

# The client-side limit when none is asked for (the API client of tests and tools; `tessera
# serve`'s default, and why, is scheduler/loader.py's SERVE_QPS / SERVE_BURST, which its config
# and flags override).
DEFAULT_QPS = 2000.0
DEFAULT_BURST = 4000

PLAN_TIMEOUT = 60.0  # seconds for kube-scheduler to bind every member of a gang's plan
