"""The core: one run of a target under a strategy -- operations and logical threads, the scheduler,
the record of a run, virtual time and where user code is.

Nothing here is public API by itself: what users need is re-exported by ``detsched``."""
