"""asyncio under control: the event loop that runs one ready callback per step (``loop``), the event
loop policy that gives controlled threads such loops (``policy``), and the patches of asyncio's
primitives that keep what the detectors need (``patches``). ``World`` installs them.

Nothing here is public API by itself: what users need is re-exported by ``detsched``."""
