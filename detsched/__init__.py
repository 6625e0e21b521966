"""detsched: deterministic concurrency testing for Python threads.

Run a test under a controlled scheduler that lets exactly one thread run at a time and decides
every interleaving; explore many of them, stop at the first failure, and replay it from a short
schedule string::

    report = detsched.explore(test, runs=1000)
    if report.failure:
        print(report.failure.schedule.dumps())     # 'ds3:...'
    detsched.replay(test, "ds3:...")                # the same failure, every time
"""

from detsched._core.ops import Op as _Op, current as _current
from detsched._explore.explorer import explore as explore, replay as replay
from detsched._detect.races import Access as Access, Race as Race
from detsched._instrument.accesses import benign as benign, unchecked as unchecked
from detsched._report.failure import Failure as Failure, Report as Report
from detsched.errors import (
    DetschedError as DetschedError,
    DetschedInternalError as DetschedInternalError,
    DetschedUsageError as DetschedUsageError,
    ReplayDiverged as ReplayDiverged,
    ReplayDivergedWarning as ReplayDivergedWarning,
    ScheduleError as ScheduleError,
)
from detsched.reproduce import reproduce as reproduce
from detsched.schedule import Schedule as Schedule

__version__ = "0.1.0"


def yield_point() -> None:
    """An explicit scheduling point: let the strategy run another thread here (no-op outside a run)."""
    me = _current()
    if me is not None:
        me.sched.wait(me, _Op("yield_point"))


__all__ = ["Access", "DetschedError", "DetschedInternalError", "DetschedUsageError", "Failure", "ReplayDiverged",
           "ReplayDivergedWarning", "Race", "Report", "Schedule", "ScheduleError", "benign", "explore", "replay", "reproduce",
           "unchecked", "yield_point"]
