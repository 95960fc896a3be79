"""The one place that touches MyHDL's scheduler internals.

MyHDL's ``Simulation.run`` is the event loop under the kernel: it runs delta cycles, then
advances to the earliest future event. It offers three hooks the kernel builds on:

* objects in ``_siglist`` are asked for ``_update()`` at the start of the next delta cycle and
  return the waiters to resume (how our :class:`~vp.kernel.event.Event` wakes its waiters);
* objects in ``_futureEvents`` with an ``apply()`` method are applied when time reaches them
  (timed notification, timed stop);
* a process that yields an ``Exception`` instance has it raised once the current time step's
  delta cycles have settled; ``_SuspendSimulation`` makes ``run`` return, resumable.

MyHDL supports one simulation per process and ends it for good when the event queue drains,
so the kernel keeps a sentinel event at the end of time. Pinned to myhdl 0.11.52.
"""

from __future__ import annotations

from types import GeneratorType

from myhdl import Simulation, SimulationError, _SuspendSimulation
from myhdl import _simulator
from myhdl._delay import delay as _myhdl_delay
from myhdl._instance import _Instantiator
from myhdl._join import join as _join
from myhdl._Signal import _Signal, _WaiterList
from myhdl._Waiter import _Waiter
from myhdl._simulator import _futureEvents, _siglist

__all__ = ["Simulation", "SimulationError", "WaiterList", "delay", "now", "set_time",
           "at_next_delta", "at_time", "unschedule", "next_event_time", "deltas_pending", "waiter_for",
           "suspender", "FOREVER"]

WaiterList = _WaiterList
#: Sentinel time: far beyond any run (2**62 ps is about 53 days of simulated time).
FOREVER = 1 << 62


def now() -> int:
    """Current simulated time (ps)."""
    return _simulator._time


def now_of(_owner) -> int:
    """``now`` shaped as a property getter (one call on the hot path instead of two)."""
    return _simulator._time


def set_time(t: int) -> None:
    """Jump time forward when nothing is scheduled before ``t`` (the caller checks)."""
    _simulator._time = t


def at_next_delta(obj) -> None:
    """Call ``obj._update()`` at the start of the next delta cycle; it returns waiters to run."""
    _siglist.append(obj)


def at_time(t: int, obj) -> None:
    """Call ``obj.apply()`` when time reaches ``t``; it returns waiters to run."""
    _futureEvents.append((t, obj))


def unschedule(obj) -> None:
    """Remove ``obj`` from the future-event queue if it is still there."""
    for i, (_, queued) in enumerate(_futureEvents):
        if queued is obj:
            del _futureEvents[i]
            return


def _stale(obj) -> bool:
    # A waiter that already resumed through another clause of an any-of wait (the timeout
    # half of `yield ev, delay(t)`), or a cancelled/superseded timed notification.
    if isinstance(obj, _Waiter):
        return bool(getattr(obj, "hasRun", 0))
    return getattr(obj, "stale", False)


def next_event_time() -> int:
    """Earliest scheduled future time (ps), or FOREVER when nothing is scheduled.
    Drops stale entries first (called between runs only)."""
    live = [entry for entry in _futureEvents if not _stale(entry[1])]
    if len(live) != len(_futureEvents):
        _futureEvents[:] = live
    return min((t for t, _ in _futureEvents), default=FOREVER)


def deltas_pending() -> bool:
    """True when something was notified for the next delta cycle."""
    return bool(_siglist)


def process_of(exc: BaseException):
    """The kernel Process whose waiter was running when MyHDL's scheduler raised ``exc``."""
    tb = exc.__traceback__
    while tb is not None:
        waiter = tb.tb_frame.f_locals.get("self")
        if isinstance(waiter, _Waiter):
            frame = getattr(waiter.generator, "gi_frame", None)
            return None if frame is None else frame.f_locals.get("self")
        tb = tb.tb_next
    return None


class delay(_myhdl_delay):
    """MyHDL's ``delay`` clause (``yield delay(ps)``), built without MyHDL's type check: the
    kernel makes one per timed wait, so construction is on the hot path. Negative delays
    are still refused (they would move time backwards)."""

    __slots__ = ()

    def __init__(self, ps: int):
        if ps < 0:
            raise TypeError(f"delay of {ps} ps: a delay is a natural number of ps")
        self._time = ps


_DELAY_TYPES = (delay, _myhdl_delay)
_schedule = _futureEvents.append


class _ProcessWaiter(_Waiter):
    """MyHDL's general waiter (any yield clause) with a short path for the clauses kernel
    processes yield: a delay, an event, or a tuple of events and delays.

    Same semantics as ``_Waiter.next`` of myhdl 0.11.52, step for step: the same clone
    protocol for any-of waits (``nrTriggers``, ``hasRun``), the same order of appends to the
    event lists, the future-event queue and ``actives``, so the scheduler sees exactly what it
    would see with MyHDL's own waiter. Other clauses (signals, generators, joins, exceptions,
    None) take MyHDL's code (:meth:`_general`)."""

    __slots__ = ()

    def next(self, waiters, actives, exc):
        if self.hasRun:
            raise StopIteration
        if self.semaphore:
            self.semaphore -= 1
            raise StopIteration
        if self.nrTriggers == 1:
            clone = self
        else:
            self.hasRun = 1
            clone = _ProcessWaiter(self.generator, self.caller)
        try:
            clause = next(self.generator)
        except StopIteration:
            if self.caller:
                waiters.append(self.caller)
            raise
        cls = clause.__class__
        if cls is delay:
            _schedule((_simulator._time + clause._time, clone))
        elif cls is tuple and clause:
            clone.nrTriggers = nr = len(clause)
            for c in clause:
                if isinstance(c, _WaiterList):
                    c.append(clone)
                    if nr > 1:
                        actives[id(c)] = c
                elif c.__class__ in _DELAY_TYPES:
                    _schedule((_simulator._time + c._time, clone))
                else:               # another kind of clause in the tuple: MyHDL's way
                    _general_one(clone, c, nr, waiters, actives, exc)
        elif isinstance(clause, _WaiterList):
            clause.append(clone)
        else:
            _general(clone, clause, waiters, actives, exc)


def _general(clone, clause, waiters, actives, exc) -> None:
    """MyHDL's dispatch of one yielded clause (myhdl 0.11.52 ``_Waiter.next``, after the
    generator step), for the clause kinds :class:`_ProcessWaiter` has no short path for."""
    if isinstance(clause, (tuple, list)):
        clone.nrTriggers = len(clause)
        clauses = clause if clause else (None,)
    elif isinstance(clause, _join):
        clone.semaphore = len(clause._args) - 1
        clauses = clause._args
    else:
        clauses = (clause,)
    nr = len(clauses)
    for clause in clauses:
        _general_one(clone, clause, nr, waiters, actives, exc)


def _general_one(clone, clause, nr, waiters, actives, exc) -> None:
    # One clause of ``nr`` (MyHDL's loop body, the same checks in the same order).
    if isinstance(clause, _WaiterList):
        clause.append(clone)
        if nr > 1:
            actives[id(clause)] = clause
    elif isinstance(clause, _Signal):
        wl = clause._eventWaiters
        wl.append(clone)
        if nr > 1:
            actives[id(wl)] = wl
    elif isinstance(clause, _myhdl_delay):
        _schedule((_simulator._time + clause._time, clone))
    elif isinstance(clause, GeneratorType):
        waiters.append(_Waiter(clause, clone))
    elif isinstance(clause, _Instantiator):
        waiters.append(_Waiter(clause.gen, clone))
    elif isinstance(clause, _join):
        waiters.append(_Waiter(clause._generator(), clone))
    elif clause is None:
        waiters.append(clone)
    elif isinstance(clause, Exception):
        waiters.append(clone)
        if not exc:
            exc.append(clause)
    else:
        raise TypeError("yield clause %s has type %s" % (repr(clause), type(clause)))


def waiter_for(generator) -> _Waiter:
    """Wrap a generator as a MyHDL waiter (the general kind: any yield clause)."""
    return _ProcessWaiter(generator)


def _suspend_now(reason: str):
    yield _SuspendSimulation(reason)


def suspender(reason: str) -> _Waiter:
    """A waiter that makes the running ``Simulation.run`` return once the current time
    step's delta cycles have settled."""
    return _Waiter(_suspend_now(reason))
