"""Schedule strings and files: round trip, and clear errors for corrupt or foreign input; replaying
a schedule the code no longer follows; explore()'s checks of its seed and counts."""

import sys
import warnings

import pytest
from hypothesis import given, strategies as st

import detsched
from detsched import Schedule, ScheduleError
from detsched import ReplayDivergedWarning
from detsched.schedule import Points
from detsched.schedule import fingerprint
from programs import LOST_UPDATE, LOST_UPDATE_FIXED


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
    assert len(schedule.dumps()) < 45 and schedule.dumps().startswith("ds3:")


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
    with pytest.raises(ScheduleError, match="'ds7' is not supported .* reads 'ds3'"):
        Schedule.loads("ds7:AAAA")


def test_a_schedule_of_an_older_format_says_what_changed_and_what_to_do():
    with pytest.raises(ScheduleError) as caught:
        Schedule.loads("ds1:A3BjdAAABBkBBwKA2AG5rmrlRJpn1y8ibWY")
    message = str(caught.value)
    assert "'ds1' was recorded by an older detsched, and this one reads 'ds3'" in message
    assert "a store in a nested function is one scheduling point" in message
    assert "Record it again" in message


def test_not_a_schedule():
    with pytest.raises(ScheduleError, match="not a detsched schedule"):
        Schedule.loads("hello")
    with pytest.raises(ScheduleError, match="not a detsched schedule file"):
        Schedule.from_json("[1, 2]")


def test_out_of_order_deviations_are_refused():
    with pytest.raises(ScheduleError, match="out of order"):
        Schedule(1, "pct", 0, 0, 10, ((5, 1), (3, 1)))


RACY, FIXED = LOST_UPDATE, LOST_UPDATE_FIXED


def recorded_then_rewritten(tmp_path, source):
    """The failing schedule of RACY's main, and the target with its file replaced by ``source``."""
    path = tmp_path / "racy_prog.py"
    path.write_text(RACY)
    target = f"{path}::main"
    schedule = detsched.explore(target, runs=200).failure.schedule
    path.write_text(source)
    sys.modules.pop("racy_prog", None)
    return target, schedule


def test_replay_of_a_fixed_bug_returns_none_and_warns_where_it_left_the_schedule(tmp_path):
    target, schedule = recorded_then_rewritten(tmp_path, FIXED)
    with pytest.warns(ReplayDivergedWarning, match=r"no longer followed the schedule (after|before) decision \d+ "
                                                   r"\(likely because the code changed\) and passed") as caught:
        assert detsched.replay(target, schedule) is None
    assert caught[0].message.passed is True


def test_replay_that_follows_the_schedule_does_not_warn(tmp_path):
    target, schedule = recorded_then_rewritten(tmp_path, RACY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        failure = detsched.replay(target, schedule)
    assert failure.message.startswith("AssertionError: balance is 10") and failure.notes == ()
    assert failure.schedule == schedule


def test_replay_that_leaves_the_schedule_and_fails_returns_the_path_it_took(tmp_path):
    changed = RACY.replace("def main():\n", "def main():\n    transfer({'balance': 0}, threading.Lock())\n")
    target, schedule = recorded_then_rewritten(tmp_path, changed)
    with pytest.warns(ReplayDivergedWarning, match="and failed"):
        failure = detsched.replay(target, schedule)
    assert failure.kind == "exception" and "no longer followed the schedule" in failure.notes[0]
    assert failure.schedule != schedule
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = detsched.replay(target, failure.schedule)  # the path it took replays exactly
    assert again.message == failure.message and again.notes == ()


def test_departure_names_the_last_deviation_that_agreed():
    recorded = Schedule(1, "pct", 0, 0, 30, ((4, 2), (9, 1), (20, 1)), Points(), (11, 12, 13), 99)
    assert recorded.departure(recorded) is None
    assert recorded.departure(Schedule(1, "pct", 0, 0, 30, ((4, 2), (9, 1)), Points(), (11, 12), 99)) == "after decision 9"
    assert recorded.departure(Schedule(1, "pct", 0, 0, 30, ((4, 2), (9, 1), (20, 1)), Points(), (11, 7, 13), 99)) \
        == "after decision 4"
    assert recorded.departure(Schedule(1, "pct", 0, 0, 25, ((4, 1),), Points(), (11,), 99)) == "before decision 4"
    assert recorded.departure(Schedule(1, "pct", 0, 0, 31, ((4, 2), (9, 1), (20, 1)), Points(), (11, 12, 13), 99)) \
        == "after decision 20"


REAL = Schedule(fingerprint("bank:main"), "pct", -7, 3, 300, ((4, 2), (9, 1), (200, 3)), Points(), (1, 2, 3), 99).dumps()


@pytest.mark.parametrize("length", range(len(REAL)))
def test_every_prefix_of_a_schedule_string_is_corrupt_or_truncated(length):
    with pytest.raises(ScheduleError, match="corrupt or truncated schedule"):
        Schedule.loads(REAL[:length])


URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.text(max_size=60) | st.text(URLSAFE, max_size=60).map(lambda body: "ds3:" + body))
def test_garbage_raises_schedule_error(text):
    try:
        Schedule.loads(text)
    except ScheduleError as exc:
        assert "Traceback" not in str(exc)
        if text.startswith("ds3:"):
            assert "corrupt or truncated schedule" in str(exc)


@given(st.binary(max_size=40))
def test_garbage_with_a_valid_checksum_raises_schedule_error_or_loads(payload):
    import base64
    import zlib

    raw = payload + zlib.crc32(payload).to_bytes(4, "big")
    text = "ds3:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    try:
        assert isinstance(Schedule.loads(text), Schedule)
    except ScheduleError as exc:
        assert "corrupt or truncated schedule" in str(exc)


def test_stray_characters_are_named():
    with pytest.raises(ScheduleError, match=r"corrupt or truncated schedule: '!' cannot appear"):
        Schedule.loads(REAL[:10] + "!" + REAL[10:])


def test_line_breaks_from_a_wrapped_terminal_are_ignored():
    assert Schedule.loads(REAL[:20] + "\n  " + REAL[20:]) == Schedule.loads(REAL)


@pytest.mark.parametrize("value", [None, 42, b"ds3:AAAA"])
def test_loads_of_a_non_string_names_the_type(value):
    with pytest.raises(ScheduleError, match="expected a schedule string like 'ds3:...', got "):
        Schedule.loads(value)


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", 'not a detsched schedule file: expected a JSON object with a "schedule" string, got a list'),
    ('"ds3:AAAA"', 'expected a JSON object with a "schedule" string, got a string'),
    ('{"target": "x.py::main"}', 'not a detsched schedule file: it has no "schedule" key'),
    ('{"schedule": 12}', 'not a detsched schedule file: its "schedule" is a number, not a \'ds3:...\' string'),
    ('{"schedule": ["ds3:AAAA"]}', 'its "schedule" is a list, not'),
    ('{"schedule": null}', 'its "schedule" is null, not'),
    ("{not json", "not a detsched schedule file: not valid JSON (line 1"),
])
def test_malformed_schedule_files_are_refused_by_what_is_wrong(text, message):
    with pytest.raises(ScheduleError) as info:
        Schedule.from_json(text)
    assert message in str(info.value)


def passes():
    pass


@pytest.mark.parametrize("option, value, message", [
    ("seed", "x", "seed must be an integer, got 'x'"),
    ("seed", True, "seed must be an integer, got True (a bool)"),
    ("seed", 1.5, "seed must be an integer, got 1.5"),
    ("runs", True, "runs must be an integer from 1 to 1000000000, got True (a bool)"),
    ("runs", 0, "runs must be an integer from 1 to"),
    ("depth", False, "depth must be an integer from 1 to 100, got False (a bool)"),
    ("max_steps", True, "max_steps must be a positive integer, got True (a bool)"),
    ("max_steps", "100", "max_steps must be a positive integer, got '100'"),
])
def test_explore_refuses_options_of_the_wrong_type(option, value, message):
    with pytest.raises(detsched.DetschedUsageError) as info:
        detsched.explore(passes, **{option: value})
    assert message in str(info.value)
