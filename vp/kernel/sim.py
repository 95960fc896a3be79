"""The simulator: simulated time, processes and the run loop (SystemC's kernel, on MyHDL).

One :class:`Simulator` exists per OS process (MyHDL's scheduler is global); a second one is
refused with :class:`SimulationError` until the first is closed. Processes are generators that
yield what they wait for::

    def blink(sim, ev):
        while True:
            yield sim.delay(10 * NS)     # wait 10 ns
            ev.notify()
            yield ev, sim.delay(1 * US)  # wait for ev, at most 1 us

Time is an ``int`` of picoseconds. ``run`` advances it; the host side calls ``advance`` for the
time its link accesses cost, which skips straight ahead when nothing is scheduled in between.
"""

from __future__ import annotations

import traceback
from enum import Enum
from typing import Generator

from vp.kernel import _myhdl
from vp.kernel.event import Event


class SimulationError(RuntimeError):
    """Misuse of the kernel: a second simulator, a closed simulator, a bad run request."""


class ProcessError(RuntimeError):
    """A process raised: a model bug. The message names the process; the cause is chained."""


class StopReason(str, Enum):
    """Why :meth:`Simulator.run` returned."""

    TIME = "time"        # reached the requested time
    EVENT = "event"      # the awaited event fired
    IDLE = "idle"        # nothing left to do
    STOPPED = "stopped"  # a process called Simulator.stop()


class Process:
    """A running generator with a hierarchical name. ``done`` once it returns."""

    __slots__ = ("name", "done", "_gen")

    def __init__(self, name: str, gen: Generator):
        self.name = name
        self.done = False
        self._gen = gen

    def _body(self):
        try:
            yield from self._gen
        except Exception as exc:  # a model bug: name the process, keep the cause
            raise ProcessError(f"process {self.name!r} raised {type(exc).__name__}: {exc}\n"
                               + "".join(traceback.format_exception(exc)[-3:])) from exc
        finally:
            self.done = True

    def __repr__(self) -> str:
        return f"Process({self.name!r}{', done' if self.done else ''})"


class _Start:
    """Starts a process at the next delta cycle."""

    __slots__ = ("waiter",)

    def __init__(self, waiter):
        self.waiter = waiter

    def _update(self):
        return [self.waiter]


class _StopAt:
    """Ends a run when time reaches it, unless that run already ended."""

    __slots__ = ("sim", "token")

    def __init__(self, sim: "Simulator", token: int):
        self.sim = sim
        self.token = token

    def apply(self):
        if self.sim._run_token != self.token:
            return []
        self.sim._reason = StopReason.TIME
        return [_myhdl.suspender("time")]


class _Suspend:
    """Ends the current run after the current time step's delta cycles settle."""

    __slots__ = ("sim",)

    def __init__(self, sim: "Simulator"):
        self.sim = sim

    def _update(self):
        self.sim._reason = StopReason.STOPPED  # wins over a _StopAt applied at this time
        return [_myhdl.suspender("stop")]


class _Sentinel:
    """Keeps MyHDL's future-event queue non-empty so an idle board is not finalised."""

    __slots__ = ()

    def apply(self):
        return []


class Simulator:
    """The simulation kernel of one board. Times in picoseconds.

    Attributes:
        global_quantum_ps: time-decoupling quantum for :class:`~vp.kernel.quantum.QuantumKeeper`.
    """

    _active: "Simulator | None" = None

    def __init__(self, name: str = "sim", global_quantum_ps: int = 0):
        if Simulator._active is not None:
            raise SimulationError(
                f"a simulation ({Simulator._active.name!r}) is already active in this process; "
                "MyHDL runs one simulation per process: close() it first, or run the other "
                "board in another process")
        self.name = name
        self.global_quantum_ps = global_quantum_ps
        self.processes: list[Process] = []
        self._run_token = 0
        self._reason = StopReason.IDLE
        self._closed = False
        self._failed: str | None = None
        try:
            self._mysim = _myhdl.Simulation()
        except _myhdl.SimulationError as exc:
            raise SimulationError(f"cannot start simulation {name!r}: {exc}") from exc
        Simulator._active = self
        _myhdl.at_time(_myhdl.FOREVER, _Sentinel())

    # -- time -----------------------------------------------------------------------------
    now = property(_myhdl.now_of, doc="Current simulated time (ps).")

    #: A wait clause for ``ps`` picoseconds: ``yield sim.delay(t)`` (the clause class itself,
    #: so making one is a single call).
    delay = staticmethod(_myhdl.delay)

    # -- processes and events ---------------------------------------------------------------
    def spawn(self, gen: Generator, name: str) -> Process:
        """Start the generator ``gen`` as a process in the next delta cycle."""
        self._check_open()
        proc = Process(name, gen)
        self.processes.append(proc)
        _myhdl.at_next_delta(_Start(_myhdl.waiter_for(proc._body())))
        return proc

    @staticmethod
    def event(name: str = "event") -> Event:
        """A new event."""
        return Event(name)

    # -- running ----------------------------------------------------------------------------
    def run(self, duration_ps: int | None = None, until: Event | None = None) -> StopReason:
        """Run for ``duration_ps`` picoseconds (None: until idle), or until ``until`` fires.

        Every event scheduled up to and including the end time is processed. When ``until``
        fires, the run returns after the delta cycles of that moment have settled.
        """
        self._check_open()
        if duration_ps is None:
            return self._run_stepwise(until, None)
        if duration_ps < 0:
            raise SimulationError(f"negative run duration {duration_ps} ps")
        self._run_token += 1
        self._reason = StopReason.STOPPED
        stop_at = _StopAt(self, self._run_token)
        _myhdl.at_time(self.now + duration_ps, stop_at)
        if until is not None:
            until._stop_run = True
        try:
            self._mysim.run(quiet=1)
        except ProcessError as exc:
            self._failed = str(exc).splitlines()[0]
            raise
        except Exception as exc:  # raised by MyHDL's scheduler, e.g. a bad yield clause
            proc = _myhdl.process_of(exc)
            self._failed = f"process {proc.name if proc else '?'!r}: {exc}"
            raise ProcessError(f"{self._failed} (a process must yield sim.delay(ps), an Event, "
                               "or a tuple of them)") from exc
        finally:
            self._run_token += 1  # stale stop requests of this run are now ignored
            if until is not None:
                if not until._stop_run:
                    self._reason = StopReason.EVENT
                until._stop_run = False
            if self._reason is not StopReason.TIME:
                _myhdl.unschedule(stop_at)  # ended early: keep the queue free of it
        return self._reason

    def run_until_idle(self, limit_ps: int | None = None) -> StopReason:
        """Run until nothing is scheduled (or ``limit_ps`` more picoseconds pass)."""
        self._check_open()
        return self._run_stepwise(None, limit_ps)

    def _run_stepwise(self, until: Event | None, limit_ps: int | None) -> StopReason:
        # Step from one scheduled time to the next so an idle board stops at its last
        # event instead of running on to the end-of-time sentinel.
        end = None if limit_ps is None else self.now + limit_ps
        while True:
            nxt = self.now if _myhdl.deltas_pending() else _myhdl.next_event_time()
            if nxt >= _myhdl.FOREVER:
                return StopReason.IDLE
            if end is not None and nxt > end:
                self.advance(end - self.now)
                return StopReason.TIME
            reason = self.run(nxt - self.now, until)
            if reason in (StopReason.EVENT, StopReason.STOPPED):
                return reason

    def settle(self) -> None:
        """Run the delta cycles pending at the current time; time does not advance."""
        if _myhdl.deltas_pending():
            self.run(0)

    def advance(self, duration_ps: int) -> None:
        """Let ``duration_ps`` picoseconds pass, running whatever is due meanwhile.

        The host link's hot path: when nothing is due it only moves time forward."""
        target = self.now + duration_ps
        if not _myhdl.deltas_pending() and _myhdl.next_event_time() > target:
            _myhdl.set_time(target)
        else:
            self.run(duration_ps)

    def stop(self) -> None:
        """Called from a process: end the current run once this time step settles."""
        _myhdl.at_next_delta(_Suspend(self))

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """End the simulation and free the process-wide slot for another one."""
        if self._closed:
            return
        self._closed = True
        self._mysim.quit()
        if Simulator._active is self:
            Simulator._active = None

    def _check_open(self) -> None:
        if self._closed:
            raise SimulationError(f"simulation {self.name!r} is closed")
        if self._failed is not None:
            raise SimulationError(f"simulation {self.name!r} ended when {self._failed}; "
                                  "close() it and build the board again")

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Simulator({self.name!r}, now={self.now} ps)"
