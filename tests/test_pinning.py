"""The CPU a run's threads are pinned to: the pid's at first, then the one of the CPUs the process
may use that other processes keep the least busy, by the per-CPU ticks of ``/proc/stat``."""

import types

import pytest

from detsched._core import pinning


class Machine:
    """A fake ``/proc/stat`` and clocks: ticks given to each CPU as busy (by others or by this
    process) or idle, and time going by."""

    def __init__(self, tmp_path, monkeypatch, cpus=2):
        self.path = tmp_path / "stat"
        self.busy = [0] * cpus
        self.idle = [0] * cpus
        self.now = 1000.0
        self.own_seconds = 0.0
        monkeypatch.setattr(pinning, "real_monotonic", lambda: self.now)
        monkeypatch.setattr(pinning, "time", types.SimpleNamespace(process_time=lambda: self.own_seconds))
        monkeypatch.setattr(pinning, "_TICKS_PER_SECOND", 100)
        self.write()

    def write(self):
        lines = [f"cpu  {sum(self.busy)} 0 0 {sum(self.idle)} 0 0 0 0 0 0"]
        lines += [f"cpu{cpu} {busy} 0 0 {idle} 0 0 0 0 0 0" for cpu, (busy, idle) in enumerate(zip(self.busy, self.idle))]
        self.path.write_text("\n".join(lines + ["intr 1 2 3", "ctxt 99"]) + "\n")

    def second_passes(self, others_busy, own_cpu=None, own_share=0.5):
        """One second: CPU i busy ``others_busy[i]`` of it with other processes' work, and this
        process busy ``own_share`` of it on ``own_cpu``."""
        for cpu, share in enumerate(others_busy):
            busy = round((share + (own_share if cpu == own_cpu else 0)) * 100)
            assert busy <= 100, "more work than a CPU has time for"
            self.busy[cpu] += busy
            self.idle[cpu] += 100 - busy
        if own_cpu is not None:
            self.own_seconds += own_share
        self.now += 1.0
        self.write()


def chooser(machine, pid):
    made = pinning.CpuChooser(str(machine.path))
    made._pid = pid
    return made


@pytest.fixture
def on_cpu_0(tmp_path, monkeypatch):
    """Two CPUs, and a chooser that has had its first look and picked CPU 0 (its pid's)."""
    machine = Machine(tmp_path, monkeypatch)
    cpus = chooser(machine, pid=10)
    assert cpus.choose({0, 1}) == 0
    return machine, cpus


@pytest.mark.parametrize("pid, first", [(10, 0), (11, 1)])
def test_the_first_choice_is_the_pids_cpu_among_the_allowed(tmp_path, monkeypatch, pid, first):
    machine = Machine(tmp_path, monkeypatch)
    assert chooser(machine, pid).choose({0, 1}) == first


def test_it_moves_off_a_cpu_another_process_keeps_busy_and_stays_there(on_cpu_0):
    machine, cpus = on_cpu_0
    machine.second_passes([0.5, 0.0], own_cpu=0)  # someone else spins on CPU 0 beside us
    assert cpus.choose({0, 1}) == 1
    machine.second_passes([0.5, 0.0], own_cpu=1, own_share=1.0)  # our own work on CPU 1 is not held against it
    assert cpus.choose({0, 1}) == 1


def test_a_small_difference_in_load_does_not_move_it(on_cpu_0):
    machine, cpus = on_cpu_0
    machine.second_passes([0.2, 0.05], own_cpu=0)
    assert cpus.choose({0, 1}) == 0


def test_only_allowed_cpus_are_chosen(tmp_path, monkeypatch):
    machine = Machine(tmp_path, monkeypatch, cpus=3)
    cpus = chooser(machine, pid=0)
    assert cpus.choose({1, 2}) == 1
    machine.second_passes([0.0, 0.5, 0.0], own_cpu=1)  # CPU 0 is as quiet as CPU 2, but not allowed
    assert cpus.choose({1, 2}) == 2


def test_it_looks_again_only_after_a_while(on_cpu_0):
    machine, cpus = on_cpu_0
    machine.second_passes([0.5, 0.0], own_cpu=0)
    machine.now = cpus._next_look - 0.01  # the busy second is there, but it is not time to look
    assert cpus.choose({0, 1}) == 0


def test_without_proc_stat_the_pids_cpu_is_kept(tmp_path, monkeypatch):
    machine = Machine(tmp_path, monkeypatch)
    cpus = pinning.CpuChooser(str(tmp_path / "missing"))
    cpus._pid = 11
    for _ in range(3):
        assert cpus.choose({0, 1}) == 1
        machine.second_passes([0.0, 0.5], own_cpu=1)
