"""Pure, synchronous DRA allocation (resource.k8s.io/v1)."""
