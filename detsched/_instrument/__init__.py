"""Instrumentation: what puts a run's user code under control -- the stdlib patches and module scans,
call points and store rewriting -- installed and restored by one World per run.

Nothing here is public API by itself: what users need is re-exported by ``detsched``."""
