"""Rewritten modules kept on disk (``detsched._instrument.cache``): used again by a later scan of the
same source, never for another source, and never a cause of failure."""

import os

import pytest

import detsched
from detsched._instrument import cache, rewrite, scan

SOURCE = """
import threading

box = [0]

def bump():
    box[0] = box[0] + 1

def main():
    workers = [threading.Thread(target=bump) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert box[0] == 2, box[0]
"""


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """A cache directory of this test's own."""
    monkeypatch.setenv("DETSCHED_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entries(directory) -> list:
    folder = directory / "rewritten"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_a_later_scan_of_the_same_source_uses_what_was_kept(kept, make_module, monkeypatch):
    module = make_module("kept_module", SOURCE)
    first = scan._compile(module, points=True)
    assert len(entries(kept)) == 1

    def no_rewriting(*args, **kwargs):
        raise AssertionError("rewritten again")

    monkeypatch.setattr(rewrite, "rewrite_module", no_rewriting)
    again = scan._compile(module, points=True)
    assert again.keys() == first.keys()
    assert all(a == b for key in first for a, b in zip(first[key], again[key]))


def test_the_kept_module_finds_what_the_rewritten_one_finds(kept, make_module):
    module = make_module("kept_race", SOURCE)
    scan._compile(module, points=True)  # kept now; the exploration below loads it
    report = detsched.explore(module.main, runs=200)
    assert report.failure is not None and "AssertionError: 1" in report.failure.message


def test_an_edited_source_is_rewritten_again(kept, make_module, tmp_path, monkeypatch):
    module = make_module("kept_edited", SOURCE)
    scan._compile(module, points=True)
    (tmp_path / "kept_edited.py").write_text(SOURCE.replace("box[0] + 1", "box[0] + 2"))
    rewritten = []
    real = rewrite.rewrite_module
    monkeypatch.setattr(rewrite, "rewrite_module", lambda *args, **kwargs: rewritten.append(1) or real(*args, **kwargs))
    scan._compile(module, points=True)
    assert rewritten == [1] and len(entries(kept)) == 1  # the entry for the file is replaced


def test_a_damaged_entry_is_rewritten_and_replaced(kept, make_module):
    module = make_module("kept_damaged", SOURCE)
    expected = scan._compile(module, points=True)
    (entry,) = entries(kept)
    (kept / "rewritten" / entry).write_bytes(b"not marshalled code")
    assert scan._compile(module, points=True).keys() == expected.keys()
    with open(module.__file__) as handle:
        assert cache.Entry(handle.read(), module.__file__, "points").load() is not None  # replaced by a good one


def test_an_empty_cache_dir_turns_it_off(tmp_path, make_module, monkeypatch):
    monkeypatch.setenv("DETSCHED_CACHE_DIR", "")
    module = make_module("not_kept", SOURCE)
    assert scan._compile(module, points=True)
    assert cache.directory() is None and not (tmp_path / "cache").exists()


def test_an_unwritable_cache_costs_only_the_rewriting(tmp_path, make_module, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("DETSCHED_CACHE_DIR", str(blocker))  # a file where the folder would go
    module = make_module("kept_nowhere", SOURCE)
    assert scan._compile(module, points=True)
