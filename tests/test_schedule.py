"""Schedule strings and files: round trip, and clear errors for corrupt or foreign input."""

import pytest
from hypothesis import given, strategies as st

from detsched import Schedule, ScheduleError
from detsched.schedule import Points
from detsched.schedule import fingerprint


@st.composite
def schedules(draw):
    steps = draw(st.integers(0, 10_000))
    chosen = draw(st.lists(st.integers(0, max(steps - 1, 0)), unique=True, max_size=min(steps, 50)))
    deviations = tuple((step, draw(st.integers(0, 300))) for step in sorted(chosen))
    checks = tuple(draw(st.integers(0, 0xFFFF)) for _ in deviations)
    return Schedule(draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from(["pct", "random", "hypothesis"])),
                    draw(st.integers(-(2**70), 2**70)), draw(st.integers(0, 10**9)), steps, deviations,
                    Points(draw(st.booleans()), draw(st.booleans())), checks, draw(st.integers(0, 2**32 - 1)))


@given(schedules())
def test_string_round_trip(schedule):
    assert Schedule.loads(schedule.dumps()) == schedule


@given(schedules())
def test_json_round_trip(schedule):
    loaded, extra = Schedule.from_json(schedule.to_json(target="x.py::main"))
    assert loaded == schedule and extra["target"] == "x.py::main"


def test_strings_are_short():
    schedule = Schedule(fingerprint("bank:main"), "pct", 0, 6, 30, ((4, 2),), Points(), (51234,), 2**32 - 1)
    assert len(schedule.dumps()) < 45 and schedule.dumps().startswith("ds1:")


def test_quotes_and_whitespace_from_copy_paste_are_accepted():
    schedule = Schedule(1, "pct", 0, 0, 3, ((1, 1),), Points(), (7,), 99)
    assert Schedule.loads(f"  '{schedule.dumps()}'\n") == schedule


def test_truncated_schedule_is_refused():
    text = Schedule(1, "pct", 0, 0, 30, ((4, 2), (9, 1))).dumps()
    with pytest.raises(ScheduleError, match="corrupt or truncated"):
        Schedule.loads(text[:-5])


def test_corrupt_schedule_is_refused():
    text = Schedule(1, "pct", 0, 0, 30, ((4, 2),)).dumps()
    flipped = text[:-3] + ("A" if text[-3] != "A" else "B") + text[-2:]
    with pytest.raises(ScheduleError, match="checksum"):
        Schedule.loads(flipped)


def test_other_version_is_refused_by_name():
    with pytest.raises(ScheduleError, match="'ds7' is not supported .* reads 'ds1'"):
        Schedule.loads("ds7:AAAA")


def test_not_a_schedule():
    with pytest.raises(ScheduleError, match="not a detsched schedule"):
        Schedule.loads("hello")
    with pytest.raises(ScheduleError, match="not a detsched schedule file"):
        Schedule.from_json("[1, 2]")


def test_out_of_order_deviations_are_refused():
    with pytest.raises(ScheduleError, match="out of order"):
        Schedule(1, "pct", 0, 0, 10, ((5, 1), (3, 1)))
