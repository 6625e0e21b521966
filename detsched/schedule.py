"""Schedules: the decisions of one run, as a frozen value, a short string and a JSON file.

A run is a sequence of *decisions*; at each one the scheduler picks an integer (which logical thread
runs next). Most decisions follow the default policy -- keep running the current thread if it can
run, otherwise the lowest-numbered thread that can -- so a schedule stores only the decisions that
deviate from it, as ``(decision, value)`` pairs: the index of the decision, and the value taken. A
two-thread lost update is one or two deviations.

String layout (``ds3:`` + unpadded URL-safe base64 of)::

    varint  len(strategy), strategy name (ASCII)
    varint  flags (bit 0: user function calls were not scheduling points; bit 1: nor were stores;
            bit 2: memory accesses were checked for data races)
    varint  seed (zig-zag), run_index, decisions, len(deviations)
    varint  for each deviation: decision delta from the previous deviation, value, path check
    4 bytes path checksum of the whole run (big-endian)
    4 bytes target fingerprint (CRC-32 of the target's name, big-endian)
    4 bytes CRC-32 of everything before it (big-endian)
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass, field

from detsched.errors import ScheduleError, a_type

#: The version written in front of every schedule string; bump it when the layout or the meaning of
#: a decision changes, so that old strings are refused with a clear message instead of misreplayed.
FORMAT_VERSION = 3
#: What changed at each version, for the message that refuses an older string.
CHANGES = {
    2: "a store in a nested function is one scheduling point, where it was one per level of nesting; "
       "closures that only the target reaches get store points; call points come from the rewritten code",
    3: "every non-blocking check (try-acquire, is_set(), get_nowait(), empty()...) is followed by a scheduling "
       "point where it returns, where only a failed try-acquire was",
}
_PREFIX = f"ds{FORMAT_VERSION}:"
#: The characters of unpadded URL-safe base64, all a schedule string's body may contain.
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def fingerprint(target_name: str) -> int:
    """Identify a target across machines: a checksum of its name, never of its code (a fix must
    still replay the schedule that found the bug)."""
    return zlib.crc32(target_name.encode())


def default_task(runnable, current):
    """The choice a schedule does not need to store: keep running the current thread when it can,
    otherwise the lowest-numbered runnable thread. Shrinking moves schedules towards this policy."""
    return current if current in runnable else runnable[0]


@dataclass(frozen=True)
class Points:
    """Which operations of user code, besides synchronisation, are scheduling points -- and whether
    its memory accesses are checked for data races (which adds no point: the same schedule runs
    the same way with races checked or not)."""

    calls: bool = True  # entering a user-defined function (where the GIL switches threads)
    writes: bool = True  # storing to an attribute, an item or a global (where free threading races)
    races: bool = False  # reads and writes are checked by the race detector


@dataclass(frozen=True)
class Schedule:
    """The decisions of one run that deviate from the default policy, plus where they came from."""

    target: int  # fingerprint() of the target
    strategy: str
    seed: int
    run_index: int
    decisions: int  # number of decisions the recorded run made; replay checks it
    # Invariant: the deviations' decision indices strictly increase, and each is < self.decisions
    deviations: tuple[tuple[int, int], ...] = field(default=())
    points: Points = field(default_factory=lambda: Points())  # replay must use the same points
    checks: tuple[int, ...] = ()  # 16-bit checksum of the path before each deviation
    path: int = 0  # 32-bit checksum of the whole run's path

    @property
    def verify(self) -> dict[int, int]:
        """Decision index -> expected path check, for the scheduler to verify during replay."""
        return {decision: check for (decision, _), check in zip(self.deviations, self.checks)}

    def __post_init__(self):
        indices = [decision for decision, _ in self.deviations]
        if indices != sorted(set(indices)) or (indices and (indices[0] < 0 or indices[-1] >= self.decisions)):
            raise ScheduleError(f"invalid schedule: deviation decisions {indices} out of order or range")
        if self.checks and len(self.checks) != len(self.deviations):
            raise ScheduleError("invalid schedule: one path check per deviation expected")

    @property
    def preemptions(self) -> int:
        return len(self.deviations)

    def dumps(self) -> str:
        out = bytearray()
        name = self.strategy.encode("ascii")
        _put_varint(out, len(name))
        out += name
        _put_varint(out, (not self.points.calls) | (not self.points.writes) << 1 | self.points.races << 2)
        for number in (_zigzag(self.seed), self.run_index, self.decisions, len(self.deviations)):
            _put_varint(out, number)
        previous = 0
        checks = self.checks or (0,) * len(self.deviations)
        for (decision, value), check in zip(self.deviations, checks):
            _put_varint(out, decision - previous)
            _put_varint(out, value)
            _put_varint(out, check)
            previous = decision
        out += self.path.to_bytes(4, "big")
        out += self.target.to_bytes(4, "big")
        out += zlib.crc32(out).to_bytes(4, "big")
        return _PREFIX + base64.urlsafe_b64encode(bytes(out)).decode().rstrip("=")

    @classmethod
    def loads(cls, text: str) -> Schedule:
        """Read a ``dumps()`` string. Quotes around it and whitespace anywhere in it (a terminal's
        line wrapping) are ignored; anything else that is not a whole schedule string raises
        ``ScheduleError``, naming what is wrong."""
        if not isinstance(text, str):
            raise ScheduleError(f"expected a schedule string like {_PREFIX + '...'!r}, got {a_type(text)}")
        text = "".join(text.split()).strip("'\"")
        if _PREFIX.startswith(text):
            what = f"{text!r} is only the start of" if text else "the text is empty, not"
            raise ScheduleError(f"corrupt or truncated schedule: {what} a {_PREFIX + '...'!r} string "
                                "(was it copied whole?)")
        head, sep, body = text.partition(":")
        if not sep or not head.startswith("ds"):
            raise ScheduleError(f"not a detsched schedule: {text[:40]!r} (schedules start with {_PREFIX!r})")
        if head != _PREFIX[:-1]:
            raise ScheduleError(_other_version(head))
        stray = next((c for c in body if c not in _ALPHABET), None)
        if stray is not None:
            raise ScheduleError(f"corrupt or truncated schedule: {stray!r} cannot appear in a schedule string "
                                "(letters, digits, '-' and '_' only); was something pasted into it?")
        if len(body) % 4 == 1:  # no whole number of bytes has this many base64 characters
            raise ScheduleError("corrupt or truncated schedule: characters are missing (was it copied whole?)")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError) as exc:  # not expected after the checks above
            raise ScheduleError(f"corrupt or truncated schedule: {exc}") from None
        if len(raw) < 13 or zlib.crc32(raw[:-4]) != int.from_bytes(raw[-4:], "big"):
            raise ScheduleError("corrupt or truncated schedule: checksum mismatch (was it copied whole?)")
        reader = _Reader(raw[:-12])
        try:
            strategy = reader.take(reader.varint()).decode("ascii")
            flags = reader.varint()
            seed = _unzigzag(reader.varint())
            run_index, decisions, count = reader.varint(), reader.varint(), reader.varint()
            deviations, checks, decision = [], [], 0
            for _ in range(count):
                decision += reader.varint()
                deviations.append((decision, reader.varint()))
                checks.append(reader.varint())
        except (IndexError, UnicodeDecodeError):
            raise ScheduleError("corrupt or truncated schedule: payload ends early") from None
        path = int.from_bytes(raw[-12:-8], "big")
        target = int.from_bytes(raw[-8:-4], "big")
        try:
            return cls(target, strategy, seed, run_index, decisions, tuple(deviations),
                       Points(not flags & 1, not flags & 2, bool(flags & 4)), tuple(checks), path)
        except ScheduleError as exc:  # a checksum that matches, over decisions that do not fit
            raise ScheduleError(f"corrupt or truncated schedule: {exc}") from None

    def departure(self, run: Schedule) -> str | None:
        """Where ``run`` -- the schedule a replay of this one actually took -- stopped following
        this one: None if it made the same decisions along the same path, else a phrase such as
        ``"after decision 12"``. Paths are checked only at deviations and at the end, so this names
        the last deviation at which the run still agreed, or ``"before decision N"`` (the first
        deviation) if it agreed at none."""
        for i, ((decision, value), check) in enumerate(zip(self.deviations, self.checks or (None,) * self.preemptions)):
            if i >= run.preemptions or run.deviations[i] != (decision, value) or (
                    check is not None and run.checks and run.checks[i] != check):
                return f"after decision {self.deviations[i - 1][0]}" if i else f"before decision {decision}"
        if (run.preemptions > self.preemptions or run.decisions != self.decisions
                or (self.path and run.path != self.path)):
            return f"after decision {self.deviations[-1][0]}" if self.deviations else "before its end"
        return None

    def to_json(self, **extra) -> str:
        return json.dumps({"schedule": self.dumps(), **extra}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> tuple[Schedule, dict]:
        """Read a file ``to_json`` wrote: the schedule, and the whole JSON object."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise ScheduleError(f"not a detsched schedule file: not valid JSON{where}") from None
        if not isinstance(data, dict):
            raise ScheduleError('not a detsched schedule file: expected a JSON object with a "schedule" string, '
                                f"got {_json_type(data)}")
        if "schedule" not in data:
            raise ScheduleError('not a detsched schedule file: it has no "schedule" key (files written by '
                                "'detsched run --save' and --detsched-save-dir have one)")
        encoded = data["schedule"]
        if not isinstance(encoded, str):
            raise ScheduleError(f'not a detsched schedule file: its "schedule" is {_json_type(encoded)}, not a '
                                f"{_PREFIX + '...'!r} string")
        return cls.loads(encoded), data


def _other_version(head: str) -> str:
    """Why a ``dsN:`` string of another format version cannot be replayed, and what to do."""
    reads = _PREFIX[:-1]
    version = int(head[2:]) if head[2:].isdigit() else None
    if version is not None and version < FORMAT_VERSION:
        since = "; ".join(f"ds{v}: {CHANGES[v]}" for v in range(version + 1, FORMAT_VERSION + 1) if v in CHANGES)
        return (f"schedule format {head!r} was recorded by an older detsched, and this one reads {reads!r}: "
                f"runs take other scheduling points since ({since}), so it would not replay the same run. "
                "Record it again: explore the target once more (detsched run, or the test itself)")
    return (f"schedule format {head!r} is not supported by this detsched, which reads {reads!r} (was it "
            "recorded by a newer detsched?); replay it with the version that recorded it")


def _json_type(value) -> str:
    """How JSON names the type of a decoded value: 'a list', 'a number', 'null'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), a_type(value))


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise IndexError
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        result = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7


def _put_varint(out: bytearray, number: int) -> None:
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)


def _zigzag(n: int) -> int:
    return n * 2 if n >= 0 else -n * 2 - 1


def _unzigzag(n: int) -> int:
    return n // 2 if n % 2 == 0 else -(n + 1) // 2
