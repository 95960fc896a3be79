"""Fixtures for the kernel tests.

MyHDL allows one simulation per OS process, so every test gets its simulator from a fixture
that always closes it, even when the test fails; ``make_sim`` is for the few tests that need
a second simulator after closing the first.
"""

from __future__ import annotations

import pytest

from vp.kernel import Simulator


@pytest.fixture
def make_sim():
    """Factory: ``make_sim(name='test', global_quantum_ps=0)``; every simulator it made is
    closed at teardown."""
    made: list[Simulator] = []

    def make(name: str = "test", global_quantum_ps: int = 0) -> Simulator:
        sim = Simulator(name, global_quantum_ps=global_quantum_ps)
        made.append(sim)
        return sim

    yield make
    for sim in made:
        sim.close()
    # A test that built a simulator by hand and failed before closing it must not poison
    # the tests after it.
    if Simulator._active is not None:
        Simulator._active.close()


@pytest.fixture
def sim(make_sim) -> Simulator:
    """The simulator of one test, closed afterwards."""
    return make_sim()
