"""asyncio under control: the event loop that runs one ready callback per step, its policy and the patches of asyncio's primitives.

Nothing here is public API by itself: what users need is re-exported by ``detsched``."""
