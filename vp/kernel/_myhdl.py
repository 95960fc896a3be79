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

from myhdl import Simulation, SimulationError, _SuspendSimulation, delay
from myhdl import _simulator
from myhdl._Signal import _WaiterList
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


def waiter_for(generator) -> _Waiter:
    """Wrap a generator as a MyHDL waiter (the general kind: any yield clause)."""
    return _Waiter(generator)


def _suspend_now(reason: str):
    yield _SuspendSimulation(reason)


def suspender(reason: str) -> _Waiter:
    """A waiter that makes the running ``Simulation.run`` return once the current time
    step's delta cycles have settled."""
    return _Waiter(_suspend_now(reason))
