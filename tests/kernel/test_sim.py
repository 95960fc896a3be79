"""The simulator: processes, the run loop and its stop reasons, advance, stop, one simulation
per process, and model bugs that surface as ProcessError."""

from __future__ import annotations

import pytest

from vp.kernel import (NS, US, Module, ProcessError, SimulationError, Simulator, StopReason)


def test_processes_run_in_time_order_with_correct_timestamps(sim):
    log = []

    def proc(name, delays):
        for d in delays:
            yield sim.delay(d)
            log.append((sim.now, name))

    sim.spawn(proc("a", [30, 30, 30]), "a")   # 30, 60, 90
    sim.spawn(proc("b", [45, 10]), "b")       # 45, 55
    sim.spawn(proc("c", [100]), "c")          # 100
    assert sim.run_until_idle() is StopReason.IDLE
    assert log == [(30, "a"), (45, "b"), (55, "b"), (60, "a"), (90, "a"), (100, "c")]
    assert sim.now == 100


def test_spawned_process_starts_at_spawn_time_and_is_done_after_return(sim):
    seen = []

    def late():
        seen.append(sim.now)
        yield sim.delay(5)
        seen.append(sim.now)

    def spawner():
        yield sim.delay(20)
        procs.append(sim.spawn(late(), "late"))

    procs = [sim.spawn(spawner(), "spawner")]
    sim.run_until_idle()
    assert seen == [20, 25]
    assert [p.name for p in sim.processes] == ["spawner", "late"]
    assert all(p.done for p in procs)


def test_processes_at_the_same_time_run_in_a_deterministic_order(make_sim):
    def trace(sim):
        log = []

        def proc(i):
            for _ in range(3):
                yield sim.delay(10)
                log.append((sim.now, i))

        for i in range(4):
            sim.spawn(proc(i), f"p{i}")
        sim.run_until_idle()
        return log

    first = make_sim("one")
    a = trace(first)
    first.close()
    b = trace(make_sim("two"))
    assert a == b
    assert sorted(a) == [(t, i) for t in (10, 20, 30) for i in range(4)]


def test_run_duration_processes_events_at_exactly_the_end_time(sim):
    log = []
    ev = sim.event("follow")

    def at(t, tag):
        yield sim.delay(t)
        log.append((sim.now, tag))
        ev.notify()            # a delta cycle at the end time still runs

    def follower():
        yield ev
        log.append((sim.now, "follower"))

    sim.spawn(at(100, "end"), "end")
    sim.spawn(at(101, "after"), "after")
    sim.spawn(follower(), "follower")
    assert sim.run(100) is StopReason.TIME
    assert sim.now == 100
    assert log == [(100, "end"), (100, "follower")]
    assert sim.run(1) is StopReason.TIME
    assert log[-1] == (101, "after")


def test_successive_runs_accumulate_time_and_zero_run_keeps_it(sim):
    assert sim.run(50) is StopReason.TIME
    assert sim.run(70) is StopReason.TIME
    assert sim.now == 120
    assert sim.run(0) is StopReason.TIME
    assert sim.now == 120


def test_run_zero_runs_pending_delta_cycles(sim):
    ev = sim.event()
    woke = []

    def waiter():
        yield ev
        woke.append(sim.now)

    sim.spawn(waiter(), "w")
    sim.run(0)
    ev.notify()
    sim.run(0)
    assert woke == [0]


def test_negative_duration_refused(sim):
    with pytest.raises(SimulationError, match="negative run duration -1 ps"):
        sim.run(-1)


def test_run_until_event_returns_event_at_its_time(sim):
    done = sim.event("done")
    after = []

    def worker():
        yield sim.delay(70)
        done.notify()
        yield sim.delay(1000)

    def watcher():
        yield done
        after.append(sim.now)   # same-time delta cycles settle before run returns

    sim.spawn(worker(), "worker")
    sim.spawn(watcher(), "watcher")
    assert sim.run(until=done) is StopReason.EVENT
    assert sim.now == 70
    assert after == [70]


def test_run_until_timed_event_with_duration_bound(sim):
    done = sim.event("done")
    done.notify(250)
    assert sim.run(1_000, until=done) is StopReason.EVENT
    assert sim.now == 250


def test_run_until_event_with_duration_that_ends_first(sim):
    done = sim.event("done")
    done.notify(250)
    assert sim.run(100, until=done) is StopReason.TIME
    assert sim.now == 100


def test_run_until_event_that_never_fires_is_idle(sim):
    never = sim.event("never")

    def worker():
        yield sim.delay(40)

    sim.spawn(worker(), "w")
    assert sim.run(until=never) is StopReason.IDLE
    assert sim.now == 40


def test_stale_until_wait_does_not_stop_a_later_run(sim):
    ev = sim.event("ev")
    assert sim.run(until=ev) is StopReason.IDLE        # nothing fires
    assert sim.run(50, until=ev) is StopReason.TIME    # bounded, nothing fires
    ev.notify(30)
    assert sim.run(100) is StopReason.TIME             # ev fires at 80, but nobody waits
    assert sim.now == 150
    ev.notify()
    assert sim.run_until_idle() is StopReason.IDLE
    assert sim.now == 150


def test_run_until_event_twice(sim):
    tick = sim.event("tick")

    def ticker():
        while True:
            yield sim.delay(10)
            tick.notify()

    sim.spawn(ticker(), "ticker")
    assert sim.run(until=tick) is StopReason.EVENT
    assert sim.now == 10
    assert sim.run(until=tick) is StopReason.EVENT
    assert sim.now == 20


def test_run_until_idle_stops_at_the_last_event(sim):
    def worker():
        yield sim.delay(300)

    sim.spawn(worker(), "w")
    assert sim.run_until_idle() is StopReason.IDLE
    assert sim.now == 300
    assert sim.run_until_idle() is StopReason.IDLE   # already idle: time stays
    assert sim.now == 300
    assert sim.run() is StopReason.IDLE              # run() without arguments is the same
    assert sim.now == 300


def test_run_until_idle_with_a_periodic_process_honours_the_limit(sim):
    ticks = []

    def periodic():
        while True:
            yield sim.delay(10 * NS)
            ticks.append(sim.now)

    sim.spawn(periodic(), "periodic")
    assert sim.run_until_idle(limit_ps=105 * NS) is StopReason.TIME
    assert sim.now == 105 * NS
    assert ticks == [i * 10 * NS for i in range(1, 11)]
    assert sim.run_until_idle(limit_ps=5 * NS) is StopReason.TIME   # limit exactly at a tick
    assert sim.now == 110 * NS
    assert ticks[-1] == 110 * NS


def test_run_until_idle_limit_not_reached_is_idle(sim):
    def worker():
        yield sim.delay(3 * US)

    sim.spawn(worker(), "w")
    assert sim.run_until_idle(limit_ps=10 * US) is StopReason.IDLE
    assert sim.now == 3 * US


def test_advance_fast_path_when_nothing_is_due(sim):
    def worker():
        yield sim.delay(10 * US)

    sim.spawn(worker(), "w")
    sim.settle()                  # the worker now waits until 10 us
    proc = sim.processes[0]
    run = sim.run
    sim.run = lambda *a, **k: pytest.fail("advance took the slow path with nothing due")
    sim.advance(3 * US)
    assert sim.now == 3 * US and not proc.done
    sim.advance(2 * US)
    assert sim.now == 5 * US and not proc.done
    sim.run = run
    sim.advance(5 * US)           # the worker's wake-up is due exactly at the target
    assert sim.now == 10 * US and proc.done


def test_advance_slow_path_runs_what_is_due(sim):
    log = []
    ev = sim.event("ev")

    def worker():
        yield sim.delay(50)
        log.append(("worker", sim.now))
        ev.notify()

    def at_target():
        yield sim.delay(100)
        log.append(("at_target", sim.now))

    def waiter():
        yield ev
        log.append(("waiter", sim.now))

    for gen, name in ((worker(), "worker"), (at_target(), "at_target"), (waiter(), "waiter")):
        sim.spawn(gen, name)
    runs = []
    run = sim.run
    sim.run = lambda *a, **k: runs.append(a) or run(*a, **k)
    sim.advance(100)
    assert runs                   # something was due: the slow path ran the scheduler
    assert sim.now == 100
    assert log == [("worker", 50), ("waiter", 50), ("at_target", 100)]


def test_advance_with_a_pending_delta_runs_it(sim):
    ev = sim.event("ev")
    woke = []

    def waiter():
        yield ev
        woke.append(sim.now)

    sim.spawn(waiter(), "w")
    sim.settle()
    ev.notify()
    sim.advance(40)
    assert woke == [0] and sim.now == 40


def test_settle_runs_deltas_without_advancing_time(sim):
    woke = []

    def proc():
        woke.append(sim.now)
        yield sim.delay(500)
        woke.append(sim.now)

    sim.spawn(proc(), "p")
    sim.settle()
    assert woke == [0] and sim.now == 0
    sim.settle()                  # nothing pending: no-op
    assert sim.now == 0


def test_stop_from_a_process(sim):
    ticks = []

    def periodic():
        while True:
            yield sim.delay(10)
            ticks.append(sim.now)
            if sim.now == 30:
                sim.stop()

    sim.spawn(periodic(), "periodic")
    assert sim.run(1_000) is StopReason.STOPPED
    assert sim.now == 30
    assert sim.run(25) is StopReason.TIME     # the stop request is consumed; time resumes
    assert sim.now == 55
    assert ticks == [10, 20, 30, 40, 50]


def test_stop_in_run_until_idle(sim):
    # KERNEL BUG (see report): run_until_idle steps with run(next_event - now), so the step's
    # own _StopAt fires at the very time the process calls stop(); _StopAt sets the reason to
    # TIME, _Suspend sets nothing, the step looks like an ordinary one and the loop runs on.
    def stopper():
        yield sim.delay(70)
        sim.stop()
        yield sim.delay(1_000)

    sim.spawn(stopper(), "stopper")
    assert sim.run_until_idle() is StopReason.STOPPED
    assert sim.now == 70


def test_second_simulator_refused_with_a_clear_message(sim):
    with pytest.raises(SimulationError) as info:
        Simulator("other")
    message = str(info.value)
    assert "'test'" in message and "already active" in message and "close()" in message
    assert Simulator._active is sim


def test_second_simulator_allowed_after_close(make_sim):
    first = make_sim("first")
    first.run(100)
    first.close()
    first.close()                 # idempotent
    second = make_sim("second")
    assert second.now == 0        # a fresh clock
    assert second.run(10) is StopReason.TIME
    assert second.now == 10


def test_closed_simulator_refuses_to_run(make_sim):
    sim = make_sim("gone")
    sim.close()
    with pytest.raises(SimulationError, match="'gone' is closed"):
        sim.run(10)
    with pytest.raises(SimulationError, match="'gone' is closed"):
        sim.spawn(iter(()), "p")


def test_simulator_context_manager_closes(make_sim):
    make_sim("fixture").close()
    with Simulator("ctx") as sim:
        sim.run(5)
    assert Simulator._active is None
    make_sim("after").close()


def test_process_that_raises_gives_process_error_naming_it(sim):
    top = Module(sim, "board")
    core = Module(top, "core0")

    def buggy():
        yield sim.delay(5)
        raise ZeroDivisionError("tile of zero rows")

    proc = core.spawn(buggy(), "worker")
    with pytest.raises(ProcessError) as info:
        sim.run_until_idle()
    message = str(info.value)
    assert "'board.core0.worker'" in message
    assert "ZeroDivisionError" in message and "tile of zero rows" in message
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert proc.done
    assert sim.now == 5


def test_a_failed_simulation_refuses_further_runs_with_a_kernel_error(sim):
    # KERNEL BUG (see report): after a ProcessError, MyHDL has finalised its simulation, yet the
    # kernel still looks open; the next run leaks MyHDL's raw StopSimulation("Simulation has
    # already finished") instead of a SimulationError naming the simulator and the process.
    def buggy():
        yield sim.delay(1)
        raise RuntimeError("bug")

    sim.spawn(buggy(), "buggy")
    with pytest.raises(ProcessError):
        sim.run(10)
    with pytest.raises(SimulationError, match="buggy"):
        sim.run(10)


def test_stop_in_run_until_event(sim):
    # KERNEL BUG (see report): same cause as test_stop_in_run_until_idle; run(until=ev) without
    # a duration steps from event time to event time and loses the stop request.
    never = sim.event("never")

    def stopper():
        yield sim.delay(70)
        sim.stop()
        yield sim.delay(1_000)

    sim.spawn(stopper(), "stopper")
    assert sim.run(until=never) is StopReason.STOPPED
    assert sim.now == 70


def test_a_bad_yield_is_a_process_error_naming_the_process(sim):
    # KERNEL BUG (see report): yielding something that is not a wait clause (here a bare int,
    # the classic slip for `yield sim.delay(10)`) is a model bug, but MyHDL raises a bare
    # TypeError("yield clause 10 has type <class 'int'>") from its scheduler, outside
    # Process._body, so nothing names the process.
    core = Module(sim, "core")

    def slip():
        yield sim.delay(5)
        yield 10

    core.spawn(slip(), "worker")
    with pytest.raises(ProcessError, match=r"'core\.worker'"):
        sim.run_until_idle()
