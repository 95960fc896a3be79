"""The quantum keeper: local time offset, need_sync at the quantum boundary, sync."""

from __future__ import annotations

import random

from vp.kernel import NS, US, QuantumKeeper


def test_need_sync_exactly_at_the_boundary(make_sim):
    sim = make_sim(global_quantum_ps=1 * US)
    qk = QuantumKeeper(sim)
    flags = []
    for _ in range(10):
        flags.append(qk.need_sync())
        qk.inc(100 * NS)
    assert flags == [False] * 10
    assert qk.local_ps == 1 * US and qk.need_sync()        # reached, not passed
    assert qk.current_time == sim.now + 1 * US


def test_sync_returns_a_wait_of_the_local_offset(make_sim):
    sim = make_sim(global_quantum_ps=1 * US)
    log = []

    def initiator():
        qk = QuantumKeeper(sim)
        qk.inc(1_234 * NS)
        before = sim.now
        yield qk.sync()
        log.append((before, sim.now, qk.local_ps, qk.current_time))

    sim.spawn(initiator(), "cpu")
    sim.run_until_idle()
    assert log == [(0, 1_234 * NS, 0, 1_234 * NS)]


def test_boundary_is_aligned_to_the_global_quantum(make_sim):
    # After a sync that overshoots a boundary, the next sync is due at the next multiple of
    # the quantum, not a full quantum later.
    sim = make_sim(global_quantum_ps=1 * US)
    syncs = []

    def initiator():
        qk = QuantumKeeper(sim)
        for _ in range(12):
            qk.inc(300 * NS)
            if qk.need_sync():
                yield qk.sync()
                syncs.append(sim.now)

    sim.spawn(initiator(), "cpu")
    sim.run_until_idle()
    assert syncs == [1_200 * NS, 2_100 * NS, 3_000 * NS]


def test_keeper_created_mid_quantum(make_sim):
    sim = make_sim(global_quantum_ps=1 * US)
    out = []

    def initiator():
        yield sim.delay(300 * NS)
        qk = QuantumKeeper(sim)
        qk.inc(699 * NS)
        out.append(qk.need_sync())
        qk.inc(1 * NS)
        out.append(qk.need_sync())

    sim.spawn(initiator(), "cpu")
    sim.run_until_idle()
    assert out == [False, True]


def test_total_time_equals_the_sum_of_delays(make_sim):
    sim = make_sim(global_quantum_ps=1 * US)
    rng = random.Random(7)
    delays = [rng.randrange(1, 400 * NS) for _ in range(500)]
    syncs = []

    def initiator():
        qk = QuantumKeeper(sim)
        for d in delays:
            qk.inc(d)
            if qk.need_sync():
                syncs.append(qk.local_ps)
                yield qk.sync()
        yield qk.sync()

    sim.spawn(initiator(), "cpu")
    sim.run_until_idle()
    assert sim.now == sum(delays)
    # Decoupled: far fewer context switches than transactions, none ahead by more than one
    # quantum plus one transaction.
    assert len(syncs) < len(delays) // 2
    assert max(syncs) < 1 * US + 400 * NS


def test_zero_quantum_syncs_every_time(make_sim):
    sim = make_sim(global_quantum_ps=0)
    log = []

    def initiator():
        qk = QuantumKeeper(sim)
        for _ in range(5):
            qk.inc(10 * NS)
            if qk.need_sync():
                yield qk.sync()
                log.append(sim.now)

    sim.spawn(initiator(), "cpu")
    sim.run_until_idle()
    assert log == [10 * NS, 20 * NS, 30 * NS, 40 * NS, 50 * NS]


def test_set_and_reset(make_sim):
    sim = make_sim(global_quantum_ps=1 * US)
    qk = QuantumKeeper(sim)
    qk.set(999 * NS)
    assert not qk.need_sync() and qk.current_time == 999 * NS
    qk.set(1 * US)
    assert qk.need_sync()
    qk.reset()
    assert qk.local_ps == 0 and not qk.need_sync()


def test_need_sync_after_time_passed_outside_the_keeper(make_sim):
    # KERNEL BUG (see report): the keeper stores the budget to the next boundary relative to
    # the time of its last sync/reset. When the initiator then waits on something else (an
    # event, a plain delay), simulated time moves on but the budget does not, so the initiator
    # runs past the boundary: here at 999 ns + 900 ns = 1.899 us, beyond the 1 us boundary,
    # need_sync() still says False.
    sim = make_sim(global_quantum_ps=1 * US)
    out = []

    def initiator():
        qk = QuantumKeeper(sim)
        yield sim.delay(999 * NS)            # e.g. waiting for a doorbell
        qk.inc(900 * NS)
        out.append((qk.current_time, qk.need_sync()))

    sim.spawn(initiator(), "cpu")
    sim.run_until_idle()
    assert out == [(1_899 * NS, True)]
