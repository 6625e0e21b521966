"""Linearizability checking: decide whether a recorded concurrent history of method calls could have
come from some sequential order of those calls on a sequential model (``checker.check``), and show
such a history as a per-thread timeline (``history.render_history``).

Nothing here is public API by itself: what users need will be re-exported by ``detsched``."""
