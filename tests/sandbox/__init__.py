"""Red-team probes: hostile programs run through the sandboxed launcher, asserting containment."""
