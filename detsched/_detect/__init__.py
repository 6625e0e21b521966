"""Detectors: pure checks over the states of a run's threads and tasks that turn what the primitives
recorded into a ``FailureInfo`` -- deadlocks, lost wakeups, leaks, livelocks, threads blocked
outside control (``threads``) and their asyncio counterparts (``tasks``). Every sentence a person
reads about a failure is written here.

Nothing here is public API by itself: what users need is re-exported by ``detsched``."""
