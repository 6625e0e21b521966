"""pytest-detsched: explore the thread interleavings of pytest tests with detsched.

Mark a test with ``@pytest.mark.detsched`` and pytest runs its body many times, each under a
different interleaving chosen by detsched's controlled scheduler; a failure is reported with the
command line (and the decorator) that replays it. The plugin is ``pytest_detsched.plugin``,
registered through the ``pytest11`` entry point; ``-p no:detsched`` turns it off.
"""

from .runner import DetschedWarning as DetschedWarning

__all__ = ["DetschedWarning"]
