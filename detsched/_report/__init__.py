"""Reports: the public Failure and Report values and the text a person reads, built from the recorded
run.

Nothing here is public API by itself: what users need is re-exported by ``detsched``."""
