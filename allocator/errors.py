"""Errors that name the object, the field and what was expected."""

from __future__ import annotations


class SpecError(ValueError):
    """A Kubernetes object that fails validation.

    str() reads like `ResourceClaim default/c1: spec.devices.requests[0].exactly.count: must be
    at least 1, got 0`.
    """

    def __init__(self, kind: str, ref: str, path: str, message: str) -> None:
        self.kind = kind
        self.ref = ref
        self.path = path
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.kind} {self.ref}" if self.ref else self.kind
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
