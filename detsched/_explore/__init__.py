"""Exploration: resolve a target, run it many times under a strategy, shrink a failure and replay it
to explain it.

Nothing here is public API by itself: what users need is re-exported by ``detsched``."""
