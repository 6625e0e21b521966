"""Exceptions detsched raises: usage errors, replay problems and internal errors."""


class DetschedError(Exception):
    """Base class of every error detsched raises on purpose."""


class DetschedUsageError(DetschedError, RuntimeError):
    """The caller asked for something detsched cannot do (bad target, bad option, unsupported call)."""


class ScheduleError(DetschedUsageError, ValueError):
    """A schedule string or file is corrupt, truncated, from another version or for another target."""


class ReplayDiverged(DetschedUsageError):
    """The program took a different path than the schedule recorded."""

    def __init__(self, step: int, detail: str):
        self.step = step
        super().__init__(
            f"replay diverged at step {step}: {detail}. The program no longer follows the recorded "
            "schedule: did the code change, or does it depend on something besides scheduling "
            "(wall time, randomness, I/O, hash order)?"
        )


class DetschedInternalError(DetschedError):
    """Something unexpected escaped the scheduler: a bug in detsched."""

    def __init__(self, detail: str = ""):
        super().__init__(f"internal error in detsched; please report it{': ' + detail if detail else ''}")


class RunAborted(BaseException):
    """Unwinds a controlled thread whose run has ended (failure found, or test finished).

    A BaseException so that ordinary ``except Exception`` handlers in user code do not swallow it.
    """
