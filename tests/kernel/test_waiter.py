"""The kernel's waiter (vp.kernel._myhdl._ProcessWaiter) against MyHDL's own _Waiter: a
random mix of processes waiting on delays, events, any-of tuples (events with timeouts), a
list clause and a nested generator must resume in exactly the same order at the same times
under both, since the order of resumes within a time step decides every later timestamp."""

from __future__ import annotations

import random

import pytest
from myhdl._Waiter import _Waiter

from vp.kernel import _myhdl


def _scenario(sim, seed: int, log: list) -> None:
    rnd = random.Random(seed)
    events = [sim.event(f"e{i}") for i in range(4)]

    def sub(tag):                        # a nested generator clause (MyHDL's general path)
        yield sim.delay(rnd.choice((0, 3, 7)))
        log.append((sim.now, tag, "sub"))

    def proc(tag):
        for step in range(40):
            kind = rnd.randrange(7)
            if kind == 0:
                yield sim.delay(rnd.choice((0, 1, 5, 10)))
            elif kind == 1:
                yield rnd.choice(events)
            elif kind == 2:
                yield rnd.choice(events), sim.delay(rnd.choice((2, 10, 30)))
            elif kind == 3:
                yield tuple(rnd.sample(events, 2)) + (sim.delay(rnd.choice((1, 4))),)
            elif kind == 4:
                yield [rnd.choice(events), sim.delay(6)]        # a list: MyHDL's general path
            elif kind == 5:
                yield sub(tag)
            else:
                rnd.choice(events).notify(rnd.choice((0, 0, 3)))
                yield sim.delay(rnd.choice((0, 2)))
            log.append((sim.now, tag, step))

    def ticker():
        for _ in range(200):
            yield sim.delay(rnd.choice((1, 2, 3)))
            rnd.choice(events).notify()

    for i in range(6):
        sim.spawn(proc(i), f"p{i}")
    sim.spawn(ticker(), "ticker")


@pytest.mark.parametrize("seed", range(8))
def test_same_resume_order_as_myhdl_waiter(make_sim, monkeypatch, seed):
    logs = []
    for waiter in (_Waiter, _myhdl._ProcessWaiter):
        monkeypatch.setattr(_myhdl, "waiter_for", waiter)
        sim = make_sim(f"w{seed}")
        log: list = []
        _scenario(sim, seed, log)
        sim.run_until_idle(10_000)
        logs.append(log)
        sim.close()
    assert len(logs[0]) > 100
    assert logs[0] == logs[1]


def test_negative_delay_is_refused():
    with pytest.raises(TypeError, match="natural number"):
        _myhdl.delay(-1)
