"""Controlled twins of the standard library's threading, queue and concurrent.futures types: each
operation is a scheduling point.

Nothing here is public API by itself: what users need is re-exported by ``detsched``."""
