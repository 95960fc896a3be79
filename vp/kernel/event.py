"""Events: what processes wait on (SystemC's ``sc_event``).

A process waits by yielding the event (``yield ev``), any of several (``yield ev1, ev2``) or an
event with a timeout (``yield ev, sim.delay(t)``). ``notify()`` wakes the waiters in the next
delta cycle, before simulated time advances; ``notify(t)`` wakes them ``t`` ps later. As in
SystemC, an event holds at most one pending timed notification: an earlier one replaces a later
one, a later one is ignored. MyHDL has no mid-delta wake-up, so an immediate notify and a
zero-delay notify both resume waiters in the next delta cycle of the current time.
"""

from __future__ import annotations

from vp.kernel import _myhdl


class Event(_myhdl.WaiterList):
    """A notifiable event. Yield it from a process to wait for it."""

    __slots__ = ("name", "_delta_pending", "_timed_at", "_stop_run", "fired_count")

    def __init__(self, name: str = "event"):
        super().__init__()
        self.name = name
        self._delta_pending = False
        self._timed_at: int | None = None
        self._stop_run = False
        self.fired_count = 0

    def notify(self, delay_ps: int = 0) -> None:
        """Wake all waiters after ``delay_ps`` picoseconds (0: in the next delta cycle)."""
        if delay_ps < 0:
            raise ValueError(f"{self.name}: negative notify delay {delay_ps} ps")
        if delay_ps == 0:
            if not self._delta_pending:
                self._delta_pending = True
                _myhdl.at_next_delta(self)
            return
        t = _myhdl.now() + delay_ps
        if self._timed_at is None or t < self._timed_at:
            self._timed_at = t
            _myhdl.at_time(t, _TimedNotify(self, t))

    def cancel(self) -> None:
        """Drop the pending timed notification, if any."""
        self._timed_at = None

    @property
    def pending_at(self) -> int | None:
        """Time (ps) of the pending timed notification, or None."""
        return self._timed_at

    # -- called by the scheduler -------------------------------------------------------
    def _update(self):
        self._delta_pending = False
        return self._fire()

    def _fire(self):
        self.fired_count += 1
        waiters = self[:]
        del self[:]
        if self._stop_run:
            self._stop_run = False
            waiters.append(_myhdl.suspender(f"event {self.name}"))
        return waiters

    def __repr__(self) -> str:
        return f"Event({self.name!r}, waiters={len(self)})"

    # WaiterList is a list: keep identity semantics so events can live in sets and dicts.
    __hash__ = object.__hash__

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other


class _TimedNotify:
    """A timed notification in MyHDL's future-event queue."""

    __slots__ = ("event", "time")

    def __init__(self, event: Event, time: int):
        self.event = event
        self.time = time

    @property
    def stale(self) -> bool:
        return self.event._timed_at != self.time

    def apply(self):
        ev = self.event
        if ev._timed_at != self.time:  # cancelled or superseded by an earlier notify
            return []
        ev._timed_at = None
        return ev._fire()
