"""Dynamic partial-order reduction: one schedule per class of equivalent interleavings.

Two schedules that differ only in the order of independent steps (steps of different threads that
touch nothing in common, or only read what they share) end in the same state; running both proves
nothing the first did not. This search runs schedules depth first, as ``dfs`` does, but tries
another thread at a decision only when a run showed a *race* there: source sets with sleep sets
(Abdulla, Aronis, Jonsson and Sagonas, "Optimal Dynamic Partial Order Reduction", POPL 2014,
section 4; after Flanagan and Godefroid, "Dynamic Partial-Order Reduction for Model Checking
Software", POPL 2005, and Godefroid's sleep sets, LNCS 1032, 1996).

After each run, ``races`` finds every pair of steps ``(i, j)`` of different threads where ``j``
depends on ``i`` and nothing ordered between them does (vector clocks over program order and the
dependent pairs of the run). Unless some thread that can begin a reversal of the race
(``initials``) is already tried at ``i``'s decision, one is added to its backtrack set; if none of
them could run there, every thread that could is (Flanagan and Godefroid's fallback). Dependencies
come from the run's footprints (``detsched._core.footprints``): primitives every operation touches,
and every memory access the race detector sees -- so a ``dpor`` run instruments accesses even when
races are not checked.

With ``preemption_bound``, a backtrack point that would exceed the bound is also added at every
earlier decision of the preempted thread's run of steps (bounded partial-order reduction, Coons,
Musuvathi and McKinley, OOPSLA 2013, add it at the run's start only, which property tests showed
misses schedules), every switch that preempts nobody is explored, and sleep sets are off (the
schedule a sleeping thread stands for may need more preemptions than the bound allows).

Deviations, all on the side of running more: a release and the acquire it lets go on are never
taken for a race (the acquire could not have run first: the acquire before the release is), but
every other pair of operations on one primitive is dependent, commuting or not; stable keys for
sleep sets merge what exact keys keep apart (see the footprints module); data choices (which ready
asyncio callback runs next) are explored in full, as in ``dfs``; a run whose every runnable thread
is asleep is run to its end rather than cut short (it counts as a schedule, and ``redundant`` says
how many there were). What the search cannot see it cannot reduce soundly: accesses in code that is
not rewritten (installed packages, C extensions) are no dependencies, and neither are reads of the
clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

from detsched._core.footprints import Footprints, Step, dependent
from detsched.strategies.ordering import check_bound, options_in_order, preempts, within_bound


@dataclass
class _Node:
    """One decision of the current path."""

    options: tuple[int, ...]  # default first
    data: bool  # a data choice: every option is explored
    current: int | None  # the thread that could go on (a switch away from it is a preemption)
    preemptions_before: int
    step: int  # index in the run's footprints of the step this decision chose (or, for data, the next one)
    taken: int  # the option the run in progress takes
    sleep: dict[int, dict]  # threads asleep here -> the stable footprint of the step each would take
    # Invariant: taken not in explored; explored and sleep hold only options.
    explored: dict[int, dict] = field(default_factory=dict)  # options run before -> their step's footprint
    backtrack: set[int] = field(default_factory=set)  # options some race says must be run from here
    footprint: dict = field(default_factory=dict)  # stable footprint of the step ``taken`` took, once known


class PartialOrder:
    name = "dpor"
    needs_footprints = True

    def __init__(self, *, seed: int = 0, depth: int = 0, preemption_bound: int | None = None):
        self.preemption_bound = check_bound(preemption_bound)
        self.path: list[_Node] = []  # Invariant: path[i] is decision i of the run in progress, or of the last
        self.position = 0  # decisions made so far in the run in progress
        self.preemptions = 0
        self.schedules = 0  # runs started
        self.redundant = 0  # runs that reached a decision where every runnable thread was asleep
        self.replaying = 0  # decisions the run in progress must make as the path says
        self.diverged = False  # a run left its replayed prefix: other options, or fewer decisions
        self.pruned = False  # the bound left out a schedule: a larger one would run more
        self._footprints: Footprints | None = None  # of the run in progress, until it is analysed
        self._blocked = False  # the run in progress reached a decision where all were asleep
        # Searching a subtree for another process (``below``): decisions up to ``floor`` are that
        # process's, so backtrack points found for them are logged for it, not added.
        # Invariant: path[:floor + 1] only changes as the run in progress replays it.
        self.floor = -1
        self.log: list[tuple] = []  # ("race", decision, candidates, preempted) or ("bound", decision, option)

    def calibrate(self, decisions: int) -> None:
        pass

    def watch(self, footprints: Footprints) -> None:
        """The footprints the scheduler records for the run about to start."""
        self._footprints = footprints

    def new_execution(self, run_index: int) -> None:
        if self.schedules:
            self._analyse()
            self._advance()
        self.schedules += 1
        self.position = self.preemptions = 0
        self._blocked = False

    @property
    def exhausted(self) -> bool:
        """Whether every class of interleavings (within the bound) has had its run."""
        self._analyse()
        return not any(self._next_option(node) is not None for node in self.path[self.floor + 1:self.position])

    # ------------------------------------------------------------------ during a run

    def next_task(self, runnable: Sequence[int], current: int | None, *, yielding: bool,
                  at: tuple[int, int] = (0, 0)) -> int:
        options, current = options_in_order(runnable, current)
        chosen = self._choose(options, current, data=False)
        if preempts(current, chosen):
            self.preemptions += 1
        return chosen

    def next_data(self, bound: int, *, at: tuple[int, int] = (0, 0)) -> int:
        return self._choose(tuple(range(bound)), None, data=True)

    def _choose(self, options: tuple[int, ...], current: int | None, *, data: bool) -> int:
        steps = len(self._footprints.steps) if self._footprints is not None else 0
        if self.position < len(self.path) and self.path[self.position].options != options:
            self.diverged = True  # the program did something else this time: search on from here
            del self.path[self.position:]
        if self.position == len(self.path):
            self.path.append(self._new_node(options, current, data, steps))
        node = self.path[self.position]
        node.step = steps
        self.position += 1
        return node.taken

    def _new_node(self, options: tuple[int, ...], current: int | None, data: bool, steps: int) -> _Node:
        sleep = self._sleep_here()
        node = _Node(options, data, current, self.preemptions, steps, options[0], sleep)
        awake = [option for option in options
                 if data or (option not in sleep and self._within_bound(node, option))]
        if awake:
            node.taken = awake[0]
        else:  # everything left from here was covered by an earlier run
            self._blocked = True
        if data or (current is None and self.preemption_bound is not None):
            # A data choice, and under a bound a switch that preempts nobody, are explored in full.
            node.backtrack.update(options)
        return node

    def _sleep_here(self) -> dict[int, dict]:
        """Sleep sets: a thread whose step from the previous decision was run before (there, or
        asleep there already) stays asleep while every step since is independent of it."""
        if self.position == 0 or self._footprints is None or self.preemption_bound is not None:
            # Under a bound, the equivalent schedule a sleeping thread stands for may need more
            # preemptions than the bound allows, and so never run: no sleep sets there.
            return {}
        parent = self.path[self.position - 1]
        asleep = dict(parent.sleep)
        if not parent.data:
            asleep.update(parent.explored)
        since = self._footprints.steps[parent.step:]
        return {tid: footprint for tid, footprint in asleep.items()
                if not any(step.tid == tid or dependent(footprint, step.stable) for step in since)}

    # ------------------------------------------------------------------ between runs

    def _analyse(self) -> None:
        """Fold the run that ended into the search: for each race, make sure some thread that can
        begin its reversal is tried where the race's first step was taken (source sets)."""
        footprints, self._footprints = self._footprints, None
        if footprints is None:
            return
        if self._blocked:
            self.redundant += 1
        steps = footprints.steps
        for step in steps:
            if 0 <= step.decision < self.position:
                self.path[step.decision].footprint = step.stable
        found, clocks = races(steps, self._enabled)
        for i, j in found:
            decision = steps[i].decision
            if 0 <= decision < self.position:  # else only one thread could go on there
                self._add(decision, initials(steps, clocks, i, j), steps[i].tid)

    def _enabled(self, step: Step) -> tuple[int, ...]:
        """Who could have run instead of ``step``."""
        if not 0 <= step.decision < len(self.path):
            return (step.tid,)
        return self.path[step.decision].options

    def _add(self, decision: int, candidates: list[int], preempted: int) -> None:
        if decision <= self.floor:
            self.log.append(("race", decision, tuple(candidates), preempted))
            return
        node = self.path[decision]
        tried = node.backtrack | node.explored.keys() | {node.taken}
        if any(tid in tried for tid in candidates):
            return
        runnable = [tid for tid in node.options if tid in candidates]
        # None of them could run there: try every thread that could (Flanagan and Godefroid's rule).
        for option in runnable[:1] or node.options:
            if self._within_bound(node, option):
                node.backtrack.add(option)
            if self.preemption_bound is not None:
                # Bounded: the reversal may fit the bound only if it begins earlier, anywhere in the
                # preempted thread's current run of steps (Coons et al. add its start; every point of
                # it is needed when preemptions elsewhere use the bound up).
                for earlier in range(self._run_began(decision, preempted), decision):
                    before = self.path[earlier]
                    if not before.data and option in before.options and self._within_bound(before, option):
                        if earlier <= self.floor:
                            self.log.append(("bound", earlier, option))
                        else:
                            before.backtrack.add(option)

    def _within_bound(self, node: _Node, option: int) -> bool:
        if within_bound(self.preemption_bound, node.current, node.preemptions_before, option):
            return True
        self.pruned = True
        return False

    def _run_began(self, decision: int, tid: int) -> int:
        """The latest decision at or before ``decision`` where ``tid`` was switched to (0 if none)."""
        for index in range(decision, -1, -1):
            node = self.path[index]
            if not node.data and node.taken == tid and node.current != tid:
                return index
        return 0

    def _next_option(self, node: _Node, explored: dict | None = None) -> int | None:
        """The option ``node`` is to take next (once ``explored`` holds those it took, if given)."""
        explored = node.explored if explored is None else explored
        for option in node.options:
            if (option in node.backtrack and option != node.taken and option not in explored
                    and (node.data or option not in node.sleep)):
                return option
        return None

    def _advance(self) -> None:
        """Move the deepest decision with a backtrack option left to it; drop the decisions after."""
        if self.position < self.replaying:
            self.diverged = True  # the last run ended before the decision it was sent down
        del self.path[self.position:]
        while len(self.path) > self.floor + 1:
            node = self.path[-1]
            option = self._next_option(node)
            if option is not None:
                node.explored[node.taken] = node.footprint
                node.taken = option
                self.replaying = len(self.path)
                return
            self.path.pop()

    # ------------------------------------------------------------------ split between processes
    #
    # A search can be shared without changing a schedule it runs: the rest of decision d's options
    # (with the subtrees under them) depends only on the decisions down to d, and what it finds for
    # decisions above d is only used once d has none left. So another process can search that rest
    # (``below``), logging the backtrack points it finds above d; this search takes them in
    # (``merge``) in its own order, as if it had run those schedules itself.

    @property
    def finished(self) -> bool:
        """Whether a search that takes its runs in by ``merge`` has nothing left to run."""
        return self.schedules > 0 and not self.path

    def next_subtree(self) -> Subtree:
        """The rest of the decision this search is at (of the whole tree, before its first run)."""
        if not self.path:
            return Subtree((), ())
        return Subtree((*map(_bare, self.path[:-1]), _copy(self.path[-1])), self._next_key())

    def _next_key(self) -> tuple:
        """The ``Subtree.key`` of ``next_subtree()``."""
        if not self.path:
            return ()
        root = self.path[-1]
        return (tuple(node.taken for node in self.path), tuple(sorted(root.explored)), tuple(sorted(root.backtrack)),
                tuple(sorted(root.sleep)))

    def forecast(self, searched: Callable[[tuple], Part | None], wanted: Callable[[tuple], bool]) -> Iterator[Subtree]:
        """The subtrees this search takes in from now on whose key is ``wanted``, in order, if it
        takes in each part ``searched`` has (by key) as it is, and every other adds no backtrack
        point above its subtree."""
        ahead = PartialOrder(preemption_bound=self.preemption_bound)
        ahead.path = list(map(_copy, self.path))
        ahead.schedules = self.schedules
        while not ahead.finished:
            key = ahead._next_key()
            if wanted(key):
                yield ahead.next_subtree()
            ahead.merge(searched(key) or _NOTHING_FOUND)

    @classmethod
    def below(cls, subtree: Subtree, *, preemption_bound: int | None = None) -> PartialOrder:
        """A search of ``subtree`` alone, to ``merge`` into the search it came from."""
        search = cls(preemption_bound=preemption_bound)
        search.path = list(map(_copy, subtree.path))
        search.floor = max(len(subtree.path) - 2, -1)
        search.replaying = len(subtree.path)
        return search

    def part(self) -> Part:
        """What this search of a subtree found, once it stops: everything ``merge`` takes in."""
        rest = None
        if not self.exhausted:  # (analysing the last run) stopped before the end: where it goes on
            self._advance()
            rest = tuple(self.path[self.floor + 1:])
        return Part(tuple(self.log), rest, self.schedules, self.redundant, self.pruned, self.diverged)

    def merge(self, part: Part) -> None:
        """Take in the search of ``next_subtree()``, as if this search had run its schedules."""
        for kind, decision, *found in part.log:
            if kind == "race":
                self._add(decision, *found)
            else:
                self.path[decision].backtrack.add(found[0])
        self.schedules += part.schedules
        self.redundant += part.redundant
        self.pruned = self.pruned or part.pruned
        self.diverged = self.diverged or part.diverged
        depth = max(len(self.path) - 1, 0)
        if part.rest is not None:
            self.path[depth:] = map(_copy, part.rest)  # the part stays as found: a forecast takes it in too
        else:  # that decision has no option left: move on above it
            del self.path[depth:]
            self.position, self.replaying = len(self.path), 0
            self._advance()


def _copy(node: _Node) -> _Node:
    return replace(node, explored=dict(node.explored), backtrack=set(node.backtrack))


def _bare(node: _Node) -> _Node:
    """``node`` as a search below it needs it: what it took and what bounds the options there."""
    return _Node(node.options, node.data, node.current, node.preemptions_before, 0, node.taken, {})


@dataclass(frozen=True)
class Subtree:
    """The rest of one decision's options, and the schedules under them: ``path`` holds every
    decision down to it, the last with its search state (taking an option not run there yet)."""

    path: tuple[_Node, ...]
    #: Equal for two subtrees whose searches run the same schedules and find the same: what the
    #: decisions down to it took, and what was run, is to be run and is asleep at the last. (The
    #: sleep set comes from the decisions above as the search was when the last was made, which a
    #: part searched ahead of its turn may have seen otherwise.)
    key: tuple


@dataclass(frozen=True)
class Part:
    """What the search of a ``Subtree`` found."""

    log: tuple[tuple, ...]  # backtrack points for decisions above the subtree, in the order found
    rest: tuple[_Node, ...] | None  # the subtree's decisions where its search goes on, or None when done
    schedules: int
    redundant: int
    pruned: bool
    diverged: bool


#: A subtree's search that ran its one schedule and added no backtrack point above it.
_NOTHING_FOUND = Part((), None, 1, 0, False, False)


def races(steps: Sequence[Step], enabled) -> tuple[list[tuple[int, int]], list[dict[int, int]]]:
    """The races of a run, and the vector clock after each step (thread -> index of its latest step
    that happens before; program order and dependent pairs in run order make happens-before).

    ``(i, j)`` is a race when step ``j`` depends on the earlier step ``i`` of another thread and
    nothing ordered between them does: ``i`` happens before ``j`` only through their own
    dependency. A step that let ``j`` go on (it published what ``j`` received: a release and the
    acquire it unblocked) while ``j``'s thread could not run instead of it (``enabled(step)`` says
    who could) cannot be reordered with ``j``: the race is then with the latest earlier step of its
    thread that took the object without publishing it (the acquire before that release), if that
    does not happen before ``j`` by other means."""
    found: list[tuple[int, int]] = []
    clocks: list[dict[int, int]] = []
    latest: dict[int, int] = {}  # tid -> index of its latest step
    # key -> {tid: (its latest step that touched key, its latest that touched key without publishing it)}
    touched: dict[object, dict[int, tuple[int, int]]] = {}
    wrote: dict[object, dict[int, tuple[int, int]]] = {}  # the same, for steps that wrote key
    for j, step in enumerate(steps):
        previous = latest.get(step.tid)
        clock = dict(clocks[previous]) if previous is not None else {}
        candidates = set()  # the latest dependent step of each other thread, per key
        for key, write in step.exact.items():
            for tid, (last, _) in (touched if write else wrote).get(key, {}).items():
                if tid != step.tid:
                    candidates.add(last)
        for i in sorted(candidates, reverse=True):
            target = i
            let_go = steps[i].published & step.received
            if let_go and step.tid not in enabled(steps[i]):
                target = max(touched[key][steps[i].tid][1] for key in let_go)
            if target >= 0 and clock.get(steps[target].tid, -1) < target:
                found.append((target, j))
            _join(clock, clocks[i])
        clock[step.tid] = j
        clocks.append(clock)
        latest[step.tid] = j
        for key, write in step.exact.items():
            for table in (touched, wrote) if write else (touched,):
                mine = table.setdefault(key, {})
                taken = mine.get(step.tid, (-1, -1))[1] if key in step.published else j
                mine[step.tid] = (j, taken)
    return found, clocks


def initials(steps: Sequence[Step], clocks: list[dict[int, int]], i: int, j: int) -> list[int]:
    """Threads that can begin an interleaving that reverses race ``(i, j)``: of the steps after
    ``i`` that do not happen after it, then ``j``, the threads whose first such step has nothing
    before it there that happens before it (Abdulla et al.'s initials of ``notdep(i).j``)."""
    first: dict[int, int] = {}  # thread -> its first step in the sequence
    found = []
    for k in [*(k for k in range(i + 1, j) if clocks[k].get(steps[i].tid, -1) < i), j]:
        tid = steps[k].tid
        if tid in first:
            continue
        if not any(clocks[k].get(other, -1) >= index for other, index in first.items()):
            found.append(tid)
        first[tid] = k
    return found


def _join(into: dict[int, int], other: dict[int, int]) -> None:
    for tid, index in other.items():
        if index > into.get(tid, -1):
            into[tid] = index
