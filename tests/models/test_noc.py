"""NoC: XY routing, the zero-load formula (DESIGN.md §7), link contention, read/write data
direction, address decoding, counters, functional data, and the saturation knee.

Every test runs a real kernel :class:`Simulator` from a fixture that always closes it (one
simulation per process). Targets are test-local memories that record when each request
reached them, so the NoC's annotation is checked at both ends.
"""

from __future__ import annotations

import itertools
import random
import time

import numpy as np
import pytest

from models.noc import Noc
from vp.bench.noc_check import injection_sweep, saturation_knee, zero_load_check
from vp.kernel import (AddressMapError, Command, DmiRegion, InitiatorSocket, Payload, Response,
                       Simulator)
from vp.spec.units import SEC, cycles_to_ps

CLK = 1_000_000_000        # 1 GHz: a cycle is exactly 1000 ps, contention arithmetic is easy
CYC = SEC // CLK
WIN = 1 << 20              # address window of each node's memory
PARAMS = dict(mesh_x=4, mesh_y=3, router_cycles=2, link_cycles=1, flit_bytes=64, clock_hz=CLK)


class Mem:
    """A memory target with a fixed latency that records (command, offset, arrival ps)."""

    def __init__(self, sim: Simulator, size: int = WIN, latency_ps: int = 0):
        self.sim, self.latency_ps = sim, latency_ps
        self.data = np.zeros(size, np.uint8)
        self.log: list[tuple[Command, int, int]] = []

    def b_transport(self, trans: Payload, delay_ps: int) -> int:
        self.log.append((trans.command, trans.address, self.sim.now + delay_ps))
        if not trans.extensions.get("timing_only"):
            self.transport_dbg(trans)
        trans.response = Response.OK
        return delay_ps + self.latency_ps

    def transport_dbg(self, trans: Payload) -> int:
        a, n = trans.address, trans.length
        if trans.command == Command.WRITE:
            self.data[a:a + n] = trans.data
        elif trans.command == Command.READ:
            trans.data[:] = self.data[a:a + n]
        trans.response = Response.OK
        return n

    def get_direct_mem_ptr(self, trans: Payload) -> DmiRegion:
        return DmiRegion(0, len(self.data) - 1, self.data, read_latency_ps=5, write_latency_ps=7)


@pytest.fixture
def sim():
    s = Simulator("noc-test")
    try:
        yield s
    finally:
        s.close()


def build(sim, latency_ps: int = 0, **overrides):
    """A NoC with a memory at every node (node n at [n * WIN, (n + 1) * WIN)) and one
    initiator socket bound to a port at every node. Returns (noc, mems, initiators)."""
    noc = Noc(sim, "noc", **{**PARAMS, **overrides})
    mems, inits = [], []
    for n in range(noc.n_nodes):
        mems.append(Mem(sim, latency_ps=latency_ps))
        noc.map(n * WIN, WIN, mems[-1], noc.node_xy(n), f"mem{n}")
        inits.append(InitiatorSocket(f"init{n}"))
        inits[-1].bind(noc.port(noc.node_xy(n), f"port{n}"))
    return noc, mems, inits


def write(init, dst: int, nbytes: int, delay: int = 0, offset: int = 0) -> tuple[Payload, int]:
    t = Payload.write(dst * WIN + offset, np.arange(nbytes, dtype=np.uint8))
    return t, init.b_transport(t, delay)


def read(init, dst: int, nbytes: int, delay: int = 0, offset: int = 0) -> tuple[Payload, int]:
    t = Payload.read(dst * WIN + offset, nbytes)
    return t, init.b_transport(t, delay)


def formula_ps(hops: int, nbytes: int, p=PARAMS) -> int:
    """DESIGN.md §7, written out independently of the model."""
    cycles = hops * (p["router_cycles"] + p["link_cycles"]) + -(-nbytes // p["flit_bytes"])
    return cycles_to_ps(cycles, p["clock_hz"])


# -- routing -------------------------------------------------------------------------------
def test_xy_route_is_minimal_and_x_first(sim):
    noc = Noc(sim, "noc", **PARAMS)
    nodes = [(x, y) for y in range(3) for x in range(4)]
    for src, dst in itertools.product(nodes, nodes):
        links = noc.route(src, dst)
        assert len(links) == noc.hops(src, dst) == abs(src[0] - dst[0]) + abs(src[1] - dst[1])
        pos, moved_y = src, False
        for a, b in links:
            assert a == pos and abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1
            if a[1] != b[1]:
                moved_y = True
            else:
                assert not moved_y, f"{src}->{dst}: x hop after a y hop"
            pos = b
        assert pos == dst
    assert noc.route((2, 1), (2, 1)) == []
    assert noc.route((0, 0), (2, 1)) == [((0, 0), (1, 0)), ((1, 0), (2, 0)), ((2, 0), (2, 1))]
    assert noc.node_id((3, 2)) == 11 and noc.node_xy(11) == (3, 2)
    with pytest.raises(ValueError, match="outside"):
        noc.route((4, 0), (0, 0))


# -- zero-load latency ---------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, {"clock_hz": 1_500_000_000},
                                       {"router_cycles": 0, "link_cycles": 3, "flit_bytes": 32,
                                        "clock_hz": 1_700_000_000}])
def test_zero_load_latency_is_the_formula_exactly(sim, overrides):
    p = {**PARAMS, **overrides}
    noc, mems, inits = build(sim, **overrides)
    for src, dst in itertools.product(range(noc.n_nodes), repeat=2):
        hops = noc.hops(src, dst)
        for nbytes in (1, 63, 64, 65, 256, 1000, 4096):
            noc.reset()
            want = formula_ps(hops, nbytes, p)
            assert noc.zero_load_ps(src, dst, nbytes) == want
            _, got = write(inits[src], dst, nbytes)
            assert got == want, (src, dst, nbytes)
            assert mems[dst].log[-1][2] == want          # the target saw the tail arrive then
    assert noc.count["queue_ps"] == 0


def test_same_node_costs_serialisation_only(sim):
    noc, _, inits = build(sim)
    assert write(inits[5], 5, 256)[1] == 4 * CYC
    assert noc.count["byte_hops"] == 0 and noc.counters()["link_busy_cycles"] == 0


def test_read_is_header_there_and_data_back_plus_target_latency(sim):
    noc, mems, inits = build(sim, latency_ps=7_000)
    for src, dst, n in [(0, 11, 256), (3, 8, 64), (6, 6, 100), (1, 2, 4096)]:
        noc.reset()
        t, got = read(inits[src], dst, n)
        there, back = formula_ps(noc.hops(src, dst), 64), formula_ps(noc.hops(dst, src), n)
        assert t.is_ok and got == there + 7_000 + back
        assert mems[dst].log[-1] == (Command.READ, 0, there)


def test_delay_annotation_and_simulated_time_are_honoured(sim):
    noc, mems, inits = build(sim)
    got = []

    def initiator():
        yield sim.delay(3_333)
        got.append(write(inits[0], 11, 128, delay=500)[1])

    sim.spawn(initiator(), "init")
    sim.run_until_idle()
    assert got == [500 + formula_ps(5, 128)]
    assert mems[11].log[-1][2] == 3_333 + 500 + formula_ps(5, 128)


# -- contention ----------------------------------------------------------------------------
def test_packets_sharing_a_link_serialise(sim):
    noc, _, inits = build(sim)
    # A: (0,0)->(3,0), 4 flits; its head reaches link (1,0)->(2,0) after one hop (3 cycles).
    _, a = write(inits[0], 3, 256)
    assert a == formula_ps(3, 256)
    # B: (1,0)->(2,1) injected 3 cycles later: heads meet at (1,0)->(2,0); A claimed it first.
    _, b = write(inits[1], 6, 256, delay=3 * CYC)
    assert b - 3 * CYC == formula_ps(2, 256) + 4 * CYC        # waited A's serialisation
    assert noc.count["queue_ps"] == 4 * CYC
    # C: the same route 4 cycles after B reaches the link as B claims it: it waits exactly
    # B's serialisation.
    _, c = write(inits[1], 6, 64, delay=7 * CYC)
    assert c - 7 * CYC == formula_ps(2, 64) + 4 * CYC


def test_tie_goes_to_the_earlier_call_and_ejection_port_is_shared(sim):
    noc, _, inits = build(sim)
    # (0,1)->(1,1) and (2,1)->(1,1): disjoint links, one ejection port at (1,1).
    first = write(inits[4], 5, 512)[1]
    second = write(inits[6], 5, 512)[1]
    assert first == formula_ps(1, 512) and second == first + 8 * CYC


def test_disjoint_paths_and_opposite_directions_do_not_interfere(sim):
    noc, _, inits = build(sim)
    cases = [(0, 1), (1, 0), (6, 7), (11, 10), (8, 4), (2, 2)]   # (1,0)<->(0,0) both ways
    for src, dst in cases:
        assert write(inits[src], dst, 1024)[1] == formula_ps(noc.hops(src, dst), 1024)
    assert noc.count["queue_ps"] == 0


def test_source_injection_port_serialises_its_own_packets(sim):
    noc, _, inits = build(sim)
    assert write(inits[5], 4, 256)[1] == formula_ps(1, 256)     # west
    assert write(inits[5], 6, 256)[1] == formula_ps(1, 256) + 4 * CYC   # east, after it


@pytest.mark.parametrize("buffer_flits, held_cycles", [(None, 4), (0, 11), (2, 9), (100, 4)])
def test_wormhole_backpressure_holds_upstream_links_when_enabled(sim, buffer_flits, held_cycles):
    noc, _, inits = build(sim, buffer_flits=buffer_flits)
    write(inits[1], 2, 64 * 10)                  # (1,0)->(2,0) busy for 10 cycles from 0
    _, a = write(inits[0], 2, 256)               # (0,0)->(2,0) stalls 7 cycles at (1,0)
    assert a == formula_ps(2, 256) + 7 * CYC     # the arrival does not depend on buffers
    link = noc.channels(0, 2)[1]                 # (0,0)->(1,0), claimed at 0
    # Own serialisation: 4 cycles. Backpressure: until the tail can move downstream, i.e.
    # (10 + 4) - D - buffer_flits cycles, where D = 3.
    assert noc.busy_until[link] == held_cycles * CYC
    noc.reset()
    assert write(inits[0], 11, 300)[1] == formula_ps(5, 300)       # zero load unchanged


# -- data direction, decoding, functional data -----------------------------------------------
def test_writes_carry_data_on_the_request_reads_on_the_response(sim):
    noc, _, inits = build(sim)
    req = noc.channels(0, 6)[1:-1]     # links (0,0)->(1,0)->(2,0)->(2,1)
    resp = noc.channels(6, 0)[1:-1]    # links (2,1)->(1,1)->(0,1)->(0,0): XY from the target
    assert set(req).isdisjoint(resp)
    write(inits[0], 6, 256)
    assert [noc.link_busy_cycles[c] for c in req] == [4] * 3
    assert all(noc.link_busy_cycles[c] == 0 for c in resp)
    noc.reset()
    read(inits[0], 6, 256)
    assert [noc.link_busy_cycles[c] for c in req] == [1] * 3      # header only
    assert [noc.link_busy_cycles[c] for c in resp] == [4] * 3     # data back
    assert noc.count["packets"] == 2 and noc.count["bytes"] == 64 + 256


def test_functional_data_arrives_and_comes_back(sim):
    noc, mems, inits = build(sim)
    payload = np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8)
    t = Payload.write(7 * WIN + 100, payload)
    inits[2].b_transport(t, 0)
    assert t.is_ok and t.address == 7 * WIN + 100              # address given back
    assert np.array_equal(mems[7].data[100:5100], payload)
    assert mems[7].log[-1][:2] == (Command.WRITE, 100)          # rebased for the target
    back = read(inits[9], 7, 5000, offset=100)[0]
    assert back.is_ok and np.array_equal(back.data, payload)
    dbg = Payload.read(7 * WIN + 100, 16)                       # debug: no time, no counters
    before = (noc.state(), sim.now)
    assert inits[0].transport_dbg(dbg) == 16 and np.array_equal(dbg.data, payload[:16])
    assert (noc.state(), sim.now) == before


def test_timing_only_is_timed_identically_and_moves_no_data(sim):
    noc, mems, inits = build(sim)
    t = Payload.write(3 * WIN, np.full(256, 9, np.uint8))
    t.extensions["timing_only"] = True
    assert inits[8].b_transport(t, 0) == formula_ps(noc.hops(8, 3), 256)
    assert t.is_ok and not mems[3].data.any()


def test_address_errors_touch_no_link(sim):
    noc = Noc(sim, "noc", **PARAMS)
    mem = Mem(sim)
    noc.map(0x1000, 0x100, mem, (3, 2), "small")
    init = InitiatorSocket("i")
    init.bind(noc.port((0, 0), "p"))
    for address, n in [(0, 4), (0x10FF, 2), (0x1100, 1), (0xFFF, 8)]:
        t = Payload.read(address, n)
        assert init.b_transport(t, 1234) == 1234
        assert t.response == Response.ADDRESS_ERROR
    assert init.transport_dbg(Payload.read(0, 4)) == 0
    assert not any(noc.busy_until) and not any(noc.link_busy_cycles) and not mem.log
    assert noc.count["address_errors"] == 4 and noc.count["packets"] == 0
    assert noc.node_of(0x10FF) == (3, 2) and noc.node_of(0x10FF, 2) is None


def test_map_refuses_overlap_bad_nodes_and_duplicate_ports(sim):
    noc = Noc(sim, "noc", **PARAMS)
    noc.map(0x1000, 0x1000, Mem(sim), (1, 1), "a")
    with pytest.raises(AddressMapError, match="overlaps"):
        noc.map(0x1800, 0x1000, Mem(sim), (2, 2), "b")
    with pytest.raises(ValueError, match="outside"):
        noc.map(0x4000, 0x10, Mem(sim), (0, 3), "c")
    noc.map(0x2000, 0x10, Mem(sim), (0, 2), "d")
    assert noc.ranges() == [("a", 0x1000, 0x1000, (1, 1)), ("d", 0x2000, 0x10, (0, 2))]
    noc.port((0, 0), "p")
    with pytest.raises(ValueError, match="already"):
        noc.port((1, 0), "p")
    with pytest.raises(ValueError):
        Noc(sim, "bad", **{**PARAMS, "flit_bytes": 0})


def test_dmi_adds_zero_load_latency_and_revocation_reaches_initiators(sim):
    noc = Noc(sim, "noc", **PARAMS)
    out = noc.map(11 * WIN, WIN, Mem(sim), (3, 2), "far")
    inits = []
    for name in ("a", "b"):
        inits.append(InitiatorSocket(name))
        inits[-1].bind(noc.port((0, 0), name))
    region = inits[0].dmi_lookup(11 * WIN + 8, 4, write=False)
    assert region is not None and (region.start, region.end) == (11 * WIN, 12 * WIN - 1)
    assert region.read_latency_ps == 5 + formula_ps(5, 1) * 2
    assert region.write_latency_ps == 7 + formula_ps(5, 1)
    seen = []
    inits[1].on_invalidate = lambda s, e: seen.append((s, e))
    out.bound_to.invalidate_direct_mem_ptr(0, 99)        # the target revokes its own range
    assert seen == [(11 * WIN, 11 * WIN + 99)] and not inits[0]._dmi


# -- counters, state ---------------------------------------------------------------------------
def test_counters_add_up(sim):
    noc, _, inits = build(sim, clock_hz=1_500_000_000)
    rng = random.Random(7)
    expect = {"packets": 0, "bytes": 0, "byte_hops": 0, "flit_hops": 0, "flit_channels": 0}
    excess = 0
    for i in range(300):
        src, dst, n = rng.randrange(12), rng.randrange(12), rng.choice([8, 64, 200, 1024])
        is_read = rng.random() < 0.4
        packets = [(src, dst, 64), (dst, src, n)] if is_read else [(src, dst, n)]
        t0 = i * 3_000
        _, got = (read if is_read else write)(inits[src], dst, n, delay=t0)
        zero = sum(noc.zero_load_ps(a, b, m) for a, b, m in packets)
        assert got - t0 >= zero
        excess += got - t0 - zero
        for a, b, m in packets:
            h, f = noc.hops(a, b), noc.flits(m)
            expect["packets"] += 1
            expect["bytes"] += m
            expect["byte_hops"] += m * h
            expect["flit_hops"] += f * h
            expect["flit_channels"] += f * (h + 2)
    c = noc.counters()
    assert c["transactions"] == 300
    assert {k: c[k] for k in ("packets", "bytes", "byte_hops")} == \
        {k: expect[k] for k in ("packets", "bytes", "byte_hops")}
    assert c["link_busy_cycles"] == expect["flit_hops"]
    assert sum(noc.link_busy_cycles) == expect["flit_channels"]
    # queue_ps sums per packet; per transaction a read's two packets may each round up 1 ps.
    assert excess - c["queue_ps"] in range(0, 300)
    assert c["queue_ps"] > 0
    assert all(isinstance(v, int) for v in c.values())
    util = noc.link_utilisation(300 * 3_000 + 10**6)
    assert util and max(util.values()) <= 1.0


def test_reset_and_state_round_trip(sim):
    noc, _, inits = build(sim)
    write(inits[0], 11, 999)
    snap = noc.state()
    noc.reset()
    assert not any(noc.busy_until) and noc.count["packets"] == 0
    noc.load_state(snap)
    assert noc.state() == snap and noc.count["packets"] == 1
    assert write(inits[0], 11, 64)[1] > formula_ps(5, 64)       # still queued behind it


# -- validation helpers ------------------------------------------------------------------------
def test_zero_load_check_helper_is_exact():
    checks = zero_load_check({"mesh_x": 3, "mesh_y": 2}, sizes=(1, 64, 65, 777))
    assert len(checks) == 6 * 6 * 4 and all(c["ok"] for c in checks)


def test_injection_sweep_shows_a_saturation_knee():
    t = time.perf_counter()
    results = injection_sweep(rates=[3.2, 12.8, 25.6, 38.4, 51.2, 64.0], duration_cycles=2000)
    assert time.perf_counter() - t < 5
    ratios = [r["ratio"] for r in results]
    assert ratios[0] <= 1.2 and ratios[-1] >= 3.0
    assert all(b >= a * 0.95 for a, b in zip(ratios, ratios[1:]))      # monotone-ish
    assert saturation_knee(results) is not None
    assert results[0]["accepted"] == pytest.approx(3.2, rel=0.2)       # below the knee: all in
    assert results[-1]["accepted"] < 64.0                               # past it: not all


def test_interleaved_target_spreads_bytes_over_its_nodes(sim):
    """A target at several nodes (HBM with a controller per stack): granule g lives on node
    g % 4; each node carries the bytes of its granules on its own route; the transaction
    completes with the slowest share, exactly as if the shares were sent separately."""
    noc = Noc(sim, "noc", **PARAMS)
    corners = [(0, 0), (3, 0), (0, 2), (3, 2)]
    mem = Mem(sim)
    noc.map(0, WIN, mem, corners, "hbm", interleave_bytes=256)
    init = InitiatorSocket("core")
    init.bind(noc.port((1, 1), "core"))
    nbytes = 4 * 256 + 2                        # from 0x40: granules 0..4, granule 4 on node 0
    shares = [256 - 0x40 + 0x42, 256, 256, 256]
    data = np.arange(nbytes, dtype=np.uint8)
    delay = init.b_transport(Payload.write(0x40, data), 0)
    ref = Noc(sim, "ref", **PARAMS)
    ref_init = InitiatorSocket("ref_core")
    ref_init.bind(ref.port((1, 1), "core"))
    for i, c in enumerate(corners):
        ref.map(i * WIN, WIN, Mem(sim), c, f"stack{i}")
    expected = max(ref_init.b_transport(Payload.write(i * WIN, np.zeros(n, np.uint8)), 0)
                   for i, n in enumerate(shares))
    assert delay == expected > max(noc.zero_load_ps((1, 1), c, n) for c, n in zip(corners, shares))
    assert np.array_equal(mem.data[0x40:0x40 + nbytes], data)
    assert noc.counters()["byte_hops"] == sum(n * noc.hops((1, 1), c)
                                              for c, n in zip(corners, shares))
    rd = Payload.read(0x40, nbytes)
    init.b_transport(rd, 0)                     # header to every node, shares come back
    assert np.array_equal(rd.data, data)
    assert noc.counters()["packets"] == 4 + 4 + 4
    assert noc.node_of(0x40) == corners[0]


def test_small_access_to_an_interleaved_target_visits_one_node(sim):
    noc = Noc(sim, "noc", **PARAMS)
    corners = [(0, 0), (3, 0), (0, 2), (3, 2)]
    noc.map(0, WIN, Mem(sim), corners, "hbm", interleave_bytes=256)
    init = InitiatorSocket("core")
    init.bind(noc.port((1, 1), "core"))
    delay = init.b_transport(Payload.read(2 * 256 + 8, 4), 0)      # granule 2: node (0, 2)
    assert noc.counters()["packets"] == 2
    assert delay == 2 * noc.zero_load_ps((1, 1), (0, 2), 4)


def test_each_agent_at_a_node_has_its_own_local_ports(sim):
    """A core and a memory controller attached at the same node do not share an ejection
    port: a request to the controller does not queue behind bulk data bound for the core."""
    noc = Noc(sim, "noc", **PARAMS)
    mem_far, mem_here = Mem(sim), Mem(sim)
    noc.map(0, WIN, mem_far, (3, 0), "far")
    noc.map(WIN, WIN, mem_here, (1, 0), "controller")
    core = InitiatorSocket("core")
    core.bind(noc.port((1, 0), "core"))           # the core sits at the controller's node
    other = InitiatorSocket("other")
    other.bind(noc.port((0, 0), "other"))
    bulk = core.b_transport(Payload.read(0, 64 * 64), 0)       # 64 flits back into (1,0)
    t = other.b_transport(Payload.write(WIN, np.zeros(64, np.uint8)), 0)
    assert t == noc.zero_load_ps((0, 0), (1, 0), 64)          # not behind the core's data
    assert bulk == noc.zero_load_ps((1, 0), (3, 0), 64) + noc.zero_load_ps((3, 0), (1, 0), 64 * 64)


@pytest.mark.parametrize("spacing_ps", [700, 60])
@pytest.mark.parametrize("clock_hz", [CLK, 1_500_000_000])
def test_one_pass_fan_out_times_like_one_send_per_packet(sim, clock_hz, spacing_ps):
    """The fast path times a transaction's packets (an interleaved target's fan-out, there and
    back) in one pass, as compiled when no channel holds it up; random mixed traffic (sparse,
    and dense so that most passes are held up) gives the same delays, busy-until times, link
    busy cycles and counters as the reference, one _send per packet."""
    nocs, inits = [], []
    for name in ("fast", "ref"):
        noc = Noc(sim, name, **{**PARAMS, "clock_hz": clock_hz})
        noc.map(0, WIN, Mem(sim, latency_ps=3_000), [(0, 0), (3, 0), (0, 2), (3, 2), (1, 1)],
                "hbm", interleave_bytes=256)
        for n in range(noc.n_nodes):
            noc.map((n + 1) * WIN, WIN, Mem(sim, latency_ps=500), noc.node_xy(n), f"m{n}")
        inits.append([InitiatorSocket(f"{name}{n}") for n in range(noc.n_nodes)])
        for n, init in enumerate(inits[-1]):
            init.bind(noc.port(noc.node_xy(n), f"p{n}"))
        nocs.append(noc)
    nocs[1]._one_pass = False
    rng = random.Random(11)
    for i in range(600):
        src = rng.randrange(12)
        address = rng.choice([rng.randrange(WIN - 70_000), (rng.randrange(12) + 1) * WIN + 64])
        n = rng.choice([0, 4, 64, 256, 300, 1024, 5000, 65_536])
        write_ = rng.random() < 0.4
        delay = i * spacing_ps + rng.randrange(3) * 2_000
        got = []
        for init in (inits[0][src], inits[1][src]):
            trans = Payload.write(address, np.zeros(n, np.uint8)) if write_ else \
                Payload.read(address, n)
            trans.extensions["timing_only"] = True
            got.append(init.b_transport(trans, delay))
        assert got[0] == got[1], i
        if i % 97 == 0:                                # busy cycles folded in as they are read
            assert nocs[0].link_busy_cycles == nocs[1].link_busy_cycles
        if i == 450:
            for noc in nocs:
                noc.reset()
            nocs[1]._one_pass = False                  # (reset chooses the one pass again)
    fast, ref = nocs
    assert fast.busy_until == ref.busy_until
    assert fast.link_busy_cycles == ref.link_busy_cycles
    assert fast.counters() == ref.counters() and fast.state() == ref.state()
