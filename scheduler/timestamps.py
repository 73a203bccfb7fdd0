"""The two timestamp formats of the Kubernetes API, written and read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def micro_time() -> str:
    """Now as a MicroTime (events' eventTime, leases' renewTime)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339() -> str:
    """Now as a Time (conditions' lastTransitionTime, allocationTimestamp)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """A Time or MicroTime as an aware datetime; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
