"""Sockets and the direct memory interface: binding, forwarding, DMI cache, invalidation."""

from __future__ import annotations

import numpy as np
import pytest

from vp.kernel import (Command, DmiRegion, InitiatorSocket, Payload, Response, SparseMemory,
                       TargetSocket)


class MemTarget:
    """A test memory target: copies bytes, annotates ``latency_ps``, grants DMI per page
    (``read_only`` grants read-only regions, ``dmi=False`` grants none)."""

    def __init__(self, size=1 << 20, page=1 << 12, latency_ps=10, read_only=False, dmi=True):
        self.mem = SparseMemory(size, page)
        self.latency_ps = latency_ps
        self.read_only = read_only
        self.dmi = dmi
        self.socket = TargetSocket("mem.in", self)
        self.calls = {"b": 0, "dbg": 0, "dmi": 0}

    def _move(self, trans):
        if not self.mem.check(trans.address, trans.length):
            trans.response = Response.ADDRESS_ERROR
            return False
        if trans.command == Command.WRITE:
            self.mem.write(trans.address, trans.data)
        elif trans.command == Command.READ:
            self.mem.read_into(trans.address, trans.data)
        trans.response = Response.OK
        return True

    def b_transport(self, trans, delay_ps):
        self.calls["b"] += 1
        return delay_ps + self.latency_ps if self._move(trans) else delay_ps

    def transport_dbg(self, trans):
        self.calls["dbg"] += 1
        return trans.length if self._move(trans) else 0

    def get_direct_mem_ptr(self, trans):
        self.calls["dmi"] += 1
        if not self.dmi or not self.mem.check(trans.address, 1):
            return None
        index = trans.address // self.mem.page_bytes
        start = index * self.mem.page_bytes
        return DmiRegion(start, start + self.mem.page_bytes - 1, self.mem.page(index),
                         read_latency_ps=3, write_latency_ps=4, allow_write=not self.read_only)


@pytest.mark.parametrize("method, args", [
    ("b_transport", (Payload.read(0, 4), 0)),
    ("transport_dbg", (Payload.read(0, 4),)),
    ("get_direct_mem_ptr", (Payload.read(0, 4),)),
])
def test_unbound_socket_raises_naming_the_socket(method, args):
    sock = InitiatorSocket("cpu.data")
    with pytest.raises(RuntimeError, match=r"initiator socket 'cpu\.data' is not bound"):
        getattr(sock, method)(*args)


def test_double_bind_refused():
    a, b = MemTarget(), MemTarget()
    b.socket.name = "other.in"
    sock = InitiatorSocket("cpu.data")
    sock.bind(a.socket)
    with pytest.raises(RuntimeError, match=r"'cpu\.data' is already bound to 'mem\.in'"):
        sock.bind(b.socket)
    assert sock.bound_to is a.socket


def test_b_transport_through_a_socket(sim):
    target = MemTarget(latency_ps=25)
    sock = InitiatorSocket("cpu.data")
    sock.bind(target.socket)
    out = []

    def initiator():
        w = Payload.write(0x123, np.arange(8, dtype=np.uint8) + 1)
        delay = sock.b_transport(w, 5)
        assert w.is_ok and delay == 30
        yield sim.delay(delay)
        r = Payload.read(0x123, 8)
        delay = sock.b_transport(r, 0)
        yield sim.delay(delay)
        out.append((sim.now, r.data.tolist(), r.response))

    sim.spawn(initiator(), "cpu")
    sim.run_until_idle()
    assert out == [(55, [1, 2, 3, 4, 5, 6, 7, 8], Response.OK)]
    assert target.calls["b"] == 2


def test_target_error_response_passes_through(sim):
    target = MemTarget(size=64, page=64)
    sock = InitiatorSocket("cpu")
    sock.bind(target.socket)
    p = Payload.read(60, 8)
    assert sock.b_transport(p, 7) == 7
    assert p.response is Response.ADDRESS_ERROR


def test_debug_transport_moves_data_without_time(sim):
    target = MemTarget()
    sock = InitiatorSocket("debugger")
    sock.bind(target.socket)
    assert sock.transport_dbg(Payload.write(0x40, b"\xde\xad\xbe\xef")) == 4
    r = Payload.read(0x40, 4)
    assert sock.transport_dbg(r) == 4
    assert r.data.tobytes() == b"\xde\xad\xbe\xef"
    assert target.calls["b"] == 0 and sim.now == 0


def test_dmi_region_contains_and_translated():
    data = np.zeros(0x100, np.uint8)
    region = DmiRegion(0x100, 0x1FF, data, read_latency_ps=2, allow_write=False)
    assert region.contains(0x100) and region.contains(0x1F8, 8)
    assert not region.contains(0x1F9, 8) and not region.contains(0xFF)
    up = region.translated(0x1000)
    assert (up.start, up.end) == (0x1100, 0x11FF)
    assert up.data is data and up.read_latency_ps == 2 and up.allow_write is False


def test_dmi_lookup_asks_once_and_gives_the_backing_store(sim):
    target = MemTarget(page=1 << 12)
    sock = InitiatorSocket("cpu")
    sock.bind(target.socket)
    region = sock.dmi_lookup(0x1010, 8, write=True)
    assert (region.start, region.end) == (0x1000, 0x1FFF)
    assert region.write_latency_ps == 4
    assert sock.dmi_lookup(0x1FF8, 8, write=False) is region       # cached
    assert target.calls["dmi"] == 1
    region.data[0x10:0x18] = np.arange(8, dtype=np.uint8)           # a direct write ...
    r = Payload.read(0x1010, 8)
    sock.b_transport(r, 0)
    assert r.data.tolist() == list(range(8))                        # ... is the memory
    assert sock.dmi_lookup(0x2000, 8, write=False) is not region    # another page: ask again
    assert target.calls["dmi"] == 2


def test_dmi_lookup_refused_by_the_target(sim):
    target = MemTarget(dmi=False)
    sock = InitiatorSocket("cpu")
    sock.bind(target.socket)
    assert sock.dmi_lookup(0, 8, write=False) is None


def test_dmi_lookup_never_returns_a_region_that_forbids_the_access(sim):
    # KERNEL BUG (see report): dmi_lookup checks allow_write/allow_read only for cached
    # regions; a freshly granted read-only region is returned for a write, and every further
    # write lookup appends the same region to the cache again.
    target = MemTarget(read_only=True)
    sock = InitiatorSocket("cpu")
    sock.bind(target.socket)
    assert sock.dmi_lookup(0x10, 8, write=False).allow_read
    for _ in range(3):
        region = sock.dmi_lookup(0x10, 8, write=True)
        assert region is None or region.allow_write
    assert len(sock._dmi) == 1


def test_invalidation_reaches_every_initiator_cache_and_callback(sim):
    target = MemTarget(page=1 << 12)
    seen = {"a": [], "b": []}
    a = InitiatorSocket("a", on_invalidate=lambda s, e: seen["a"].append((s, e)))
    b = InitiatorSocket("b", on_invalidate=lambda s, e: seen["b"].append((s, e)))
    a.bind(target.socket)
    b.bind(target.socket)
    a.dmi_lookup(0x0, 8, False)
    a.dmi_lookup(0x3000, 8, False)
    b.dmi_lookup(0x0, 8, False)
    assert target.calls["dmi"] == 3
    target.socket.invalidate_direct_mem_ptr(0x0, 0xFFF)
    assert seen == {"a": [(0x0, 0xFFF)], "b": [(0x0, 0xFFF)]}
    assert [(r.start, r.end) for r in a._dmi] == [(0x3000, 0x3FFF)]   # untouched page kept
    a.dmi_lookup(0x3000, 8, False)
    assert target.calls["dmi"] == 3                                   # still cached
    a.dmi_lookup(0x0, 8, False)
    assert target.calls["dmi"] == 4                                   # revoked: asked again


def test_invalidation_boundaries_are_inclusive(sim):
    target = MemTarget(page=1 << 12)
    sock = InitiatorSocket("cpu")
    sock.bind(target.socket)
    for page in range(3):
        sock.dmi_lookup(page << 12, 1, False)
    target.socket.invalidate_direct_mem_ptr(0x1FFF, 0x1FFF)            # last byte of page 1
    assert [r.start for r in sock._dmi] == [0x0, 0x2000]
    target.socket.invalidate_direct_mem_ptr(0x0, 0x2000)                # first byte of page 2
    assert sock._dmi == []
