"""Exceptions detsched raises: usage errors, replay problems and internal errors."""


def a_type(value) -> str:
    """How a message names the type of a value it did not expect: ``an int``, ``a list``, ``None``."""
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


class DetschedError(Exception):
    """Base class of every error detsched raises on purpose."""


class DetschedUsageError(DetschedError, RuntimeError):
    """The caller asked for something detsched cannot do (bad target, bad option, unsupported call)."""


class ScheduleError(DetschedUsageError, ValueError):
    """A schedule string or file is corrupt, truncated, from another version or for another target."""


class ReplayDiverged(DetschedUsageError):
    """A failure's own schedule did not follow itself while detsched built its report (the program
    depends on something besides scheduling). ``detsched.replay()`` of a schedule the program no
    longer follows warns ``ReplayDivergedWarning`` instead."""

    def __init__(self, decision: int, detail: str):
        self.decision = decision  # index of the decision at which the run left the schedule
        super().__init__(
            f"replay diverged at decision {decision}: {detail}. The program no longer follows the recorded "
            "schedule: did the code change, or does it depend on something besides scheduling "
            "(wall time, randomness, I/O, hash order)?"
        )


class ReplayDivergedWarning(UserWarning):
    """``detsched.replay()`` ran the schedule to the end, but the program no longer took the path
    it recorded -- usually because the code changed, for example to fix the bug. ``where`` says
    where the run left the schedule (``"after decision 12"``); ``passed`` whether it then passed."""

    def __init__(self, where: str, passed: bool):
        self.where, self.passed = where, passed
        outcome = ("and passed; the schedule no longer drives the interleaving it recorded, so this does not "
                   "show the bug is fixed: explore again to check" if passed else
                   "and failed; the failure's schedule is the path the run took, which replays exactly")
        super().__init__(f"the run no longer followed the schedule {where} (likely because the code changed) "
                         f"{outcome}")


class InstrumentWarning(UserWarning):
    """A module of the project could not be instrumented as asked: detsched runs it with less (no
    race checks, or no scheduling points in its functions) and says which and why."""


class DetschedInternalError(DetschedError):
    """Something unexpected escaped the scheduler: a bug in detsched."""

    def __init__(self, detail: str = ""):
        super().__init__(f"internal error in detsched; please report it{': ' + detail if detail else ''}")


class RunAborted(BaseException):
    """Unwinds a controlled thread whose run has ended (failure found, or test finished).

    A BaseException so that ordinary ``except Exception`` handlers in user code do not swallow it.
    """
