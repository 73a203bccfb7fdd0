"""Limits of the HTTP surface, in a module light enough for the CLI to import."""

from __future__ import annotations

# kube-scheduler's largest real call: ExtenderArgs with full Node objects (nodeCacheCapable: false)
# for 15,000 nodes of about 13 KB each (labels, annotations, conditions, 50 images; measured in
# tests/test_extender.py) is about 200 MB; with NodeNames (Tessera's shipped config) well under 1 MB.
DEFAULT_MAX_BODY = 512 * 1024 * 1024
