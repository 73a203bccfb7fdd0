"""Tessera service: CLI, simulate, and (later) informers, extender, secondary scheduler."""
