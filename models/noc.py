"""The network-on-chip: a 2-D mesh with XY routing, as a transaction-level interconnect.

Programming model: none (no registers). The NoC is wiring between initiators and targets:

* ``noc.map(base, size, target, node, name)`` attaches a target (an HBM controller, a core's
  SRAM) at mesh node ``node = (x, y)``; addresses are decoded, rebased and overlap-checked by a
  composed :class:`~vp.kernel.Router`.
* ``noc.port(node, name)`` is an initiator's entry at its node (a ``TargetSocket``): a core, DMA
  engine or command processor binds its ``InitiatorSocket`` to it.

Nodes are ``(x, y)`` with ``0 <= x < mesh_x``, ``0 <= y < mesh_y``; node id ``y * mesh_x + x``.

Timing (NoC clock cycles, ``cycle = 1 / clock_hz``; ``D = router_cycles + link_cycles``,
``S = ceil(bytes / flit_bytes)`` flits, at least 1). A packet crosses a chain of *channels*:
its source's injection port, the directional mesh links of its XY route (all of x first, then
y), its destination's ejection port. Each channel has a busy-until time (plain ints):

* the head reaches channel i at ``t_i`` and claims it at ``s_i = max(t_i, busy_until[i])``
  (packets claim channels in ``b_transport`` call order; ties go to the earlier call); the
  channel is then busy for the packet's serialisation, ``busy_until[i] = s_i + S`` cycles;
* the head reaches the next channel ``D`` cycles after claiming a mesh link, at once after the
  injection port; the tail leaves the ejection port ``S`` cycles after the head claimed it, and
  that is the packet's arrival time.

This is wormhole/cut-through pipelining at one step per packet and channel (never per flit):
the body follows the head, so latency is ``hops * D + S``, not store-and-forward's
``hops * (D + S)``. By default a stalled head's flits wait in router buffers deep enough to
hold them (virtual cut-through), so the channels behind it are free after ``S`` cycles. With
``buffer_flits = B`` the worm holds them instead (wormhole backpressure, one backward pass):
``busy_until[i] = max(s_i + S, busy_until[i+1] - d_i - B)``, ``d_i`` the head delay after
channel i (``D`` for a link, 0 for the injection port). Known pessimism of busy-until: a
packet that reserves a channel for a later time blocks one that reaches it earlier but is
timed afterwards (no gap filling), so open-loop traffic saturates below ideal mesh capacity.

Free channels give the zero-load latency of DESIGN.md §7 exactly,
``(hops * (router_cycles + link_cycles) + S) * cycle``, hops = Manhattan distance; a packet to
its own node (0 hops) takes ``S * cycle`` (injection and ejection ports only). Cycle counts are
converted to ps once per contention-free stretch (``cycles_to_ps`` rounds up), so zero load is
exact even when a cycle is not a whole number of ps.

A transaction through a port, arriving at ``t0 = now + delay``:

* WRITE: one packet of ``length`` bytes to the target's node, then the target's own delay;
  completion when the target is done (the write acknowledgement is not timed).
* READ: a header-only request (``flit_bytes`` bytes, one flit), the target's delay, then a
  response of ``length`` bytes on the XY route from the target's node back to the source.
* IGNORE: the header-only request. A target error answers with a header-only response (reads).
* no mapping covers ``[address, address + length)``: ``ADDRESS_ERROR``, no channel touched.
* extension ``timing_only``: timed identically; the NoC never moves data, the target honours it.
* debug transport: decode only, no time, no counters. DMI: the target's region, its latency
  raised by the zero-load time of one-flit packets (read: there and back; write: there).

Cost: each direction of a transaction is timed in one pass over its packets (an interleaved
target's fan-out: a 16 MiB HBM read is 8 header packets out and 8 data packets back). That pass
is compiled once per (initiator, target, offset modulo the interleave, length, direction) into
a :class:`_Fan`: the packets' channels with their head and tail offsets in ps, and the whole
pass's result relative to ``t0`` when no earlier traffic holds a packet up. When every channel
is free by the time the pass's head first reaches it, the result is that (one compare and one
store per channel, ~2x faster); else the packets are timed one channel at a time. Link busy
cycles are counted as uses of each compiled pass and added to the channels when read. The
packet-by-packet form (``_send``, used for ``buffer_flits``) gives identical results (tests
compare them).

Counters (plain ints): transactions, packets, bytes (every packet's size, headers included),
byte_hops (sum of bytes x hops, for energy), queue_ps (sum over packets of arrival minus
zero-load arrival), address_errors; ``link_busy_cycles`` (per channel: flits carried, so a
link's utilisation is busy cycles x cycle / elapsed <= 1).
"""

from __future__ import annotations

from dataclasses import replace

from vp.kernel import (Command, DmiRegion, InitiatorSocket, Module, Payload, Response, Router,
                       TargetSocket)
from vp.spec.units import SEC, cycles_to_ps

__all__ = ["Noc"]

_READ, _WRITE = Command.READ, Command.WRITE
_OK, _ADDRESS_ERROR = Response.OK, Response.ADDRESS_ERROR
# Directions of the four output links of a router: channel id = node * 4 + direction.
_DIRS = ((1, 0), (-1, 0), (0, 1), (0, -1))
COUNTERS = ("transactions", "packets", "bytes", "byte_hops", "queue_ps", "address_errors")


class _CyclesPs:
    """``ps[k]``: ps of k cycles (rounded up) for any k, like the small-k table."""

    __slots__ = ("clock_hz",)

    def __init__(self, clock_hz: int):
        self.clock_hz = clock_hz

    def __getitem__(self, k: int) -> int:
        return -(-k * SEC // self.clock_hz)


class _Fan:
    """One direction of a transaction, compiled for its routes and sizes (see :meth:`Noc._fan_of`).

    ``packets``: per packet ``(injection port, later channels, head ps, tail ps)``: the head
    reaches the ``j``-th later channel ``head[j]`` ps after the packet's base time (when it
    was last held up, or its injection) and the channel is then busy until ``tail[j]`` ps
    after it; ``tail[0]`` is also the injection port's serialisation. With ``t0`` the
    injection time (ps), when no channel ``c`` of ``free`` (the first use of each channel by
    the pass) is busy after ``t0 + h``, every channel ``c`` of ``ends`` is busy until
    ``t0 + d``, the last tail arrives at ``t0 + latest`` and the pass adds ``queued`` ps of
    queueing. ``flits`` is ``(route id, flits)`` per route, added to the link busy
    cycles ``used`` times when they are read; ``n``, ``nbytes``, ``byte_hops`` and ``zero_ps``
    (the packets' zero-load ps) feed the counters."""

    __slots__ = ("packets", "free", "ends", "latest", "queued", "flits",
                 "used", "n", "nbytes", "byte_hops", "zero_ps")


class _Port:
    """The forward interface of one initiator's entry port: agent ``src`` (its own local
    injection and ejection channels at its node)."""

    __slots__ = ("noc", "src", "socket")

    def __init__(self, noc: "Noc", src: int, name: str):
        self.noc, self.src = noc, src
        self.socket = TargetSocket(f"{noc.full_name}.{name}", self)

    def b_transport(self, trans: Payload, delay_ps: int) -> int:
        return self.noc._transport(self.src, trans, delay_ps)

    def transport_dbg(self, trans: Payload) -> int:
        return self.noc._up.transport_dbg(trans)

    def get_direct_mem_ptr(self, trans: Payload) -> DmiRegion | None:
        return self.noc._dmi(self.src, trans)


class Noc(Module):
    """A ``mesh_x`` x ``mesh_y`` mesh. Latencies in cycles of ``clock_hz``; ``flit_bytes`` is
    the link width (bytes per cycle per direction); ``buffer_flits`` (None: unbounded, no
    backpressure) the router input buffering of the wormhole backpressure option.

    Channels are numbered ``node * 4 + direction`` (+x, -x, +y, -y) for mesh links, then
    ``4 * n_nodes + node`` for injection and ``5 * n_nodes + node`` for ejection ports.

    Attributes:
        busy_until: per channel, the time it is free again (ps).
        link_busy_cycles: per channel, cycles spent carrying flits.
        count: the counters of the module docstring (plain ints by name); :meth:`counters`
            returns them flat for the stats call.
    """

    def __init__(self, parent, name: str, *, mesh_x: int, mesh_y: int, router_cycles: int,
                 link_cycles: int, flit_bytes: int, clock_hz: int,
                 buffer_flits: int | None = None):
        super().__init__(parent, name)
        if mesh_x < 1 or mesh_y < 1 or flit_bytes < 1 or clock_hz < 1:
            raise ValueError(f"{self.full_name}: mesh {mesh_x}x{mesh_y}, flit {flit_bytes} B, "
                             f"clock {clock_hz} Hz: all must be >= 1")
        if router_cycles < 0 or link_cycles < 0 or (buffer_flits or 0) < 0:
            raise ValueError(f"{self.full_name}: router/link cycles and buffer flits must "
                             "be >= 0")
        self.mesh_x, self.mesh_y = mesh_x, mesh_y
        self.router_cycles, self.link_cycles = router_cycles, link_cycles
        self.flit_bytes, self.clock_hz = flit_bytes, clock_hz
        self.buffer_flits = buffer_flits
        self.n_nodes = mesh_x * mesh_y
        # ps of k cycles, ceil(k * SEC / clock), by table for the common small k (hot path).
        self._cycles_ps = [-(-k * SEC // clock_hz) for k in range(1 << 14)]
        self._ps_of = _CyclesPs(clock_hz)
        self._decoder = Router(self, "decode")
        # Revocations from any target reach every port's initiators through this socket.
        self._up = InitiatorSocket(f"{self.full_name}.up", on_invalidate=self._invalidate)
        self._up.bind(self._decoder.target_socket)
        # base -> (agents at its nodes, socket, interleave granule in bytes)
        self._targets: dict[int, tuple[tuple[int, ...], InitiatorSocket, int]] = {}
        self._ports: dict[str, _Port] = {}
        self._routes: dict[tuple[int, int], tuple[int, ...]] = {}    # channel ids, cached
        # Routes of the one-pass timing (_fan), cached: (src agent, target base) -> plan; each
        # route's channels and its flits not yet added to link_busy_cycles, by route id.
        self._plans: dict[tuple[int, int], list] = {}
        self._route_ids: dict[tuple[int, ...], int] = {}
        self._route_chans: list[tuple[int, ...]] = []
        self._route_flits: list[int] = []
        # (src agent, target base, offset mod interleave span, length, back, size) -> _Fan
        self._fans: dict[tuple, _Fan] = {}
        # Agents: every node's own port (agents 0..n-1, channels 4n+node and 5n+node), then one
        # per initiator port and per target attachment, each with its own local channels.
        self._agent_node = list(range(self.n_nodes))
        self._inject = [4 * self.n_nodes + n for n in range(self.n_nodes)]
        self._eject = [5 * self.n_nodes + n for n in range(self.n_nodes)]
        self.reset()

    @classmethod
    def from_config(cls, parent, name: str, cfg, clock_hz: int) -> "Noc":
        """From the board file's ``noc`` section (:class:`vp.spec.board_config.NocConfig`)."""
        return cls(parent, name, mesh_x=cfg.mesh_x, mesh_y=cfg.mesh_y,
                   router_cycles=cfg.router_cycles, link_cycles=cfg.link_cycles,
                   flit_bytes=cfg.flit_bytes, clock_hz=clock_hz)

    # -- topology ---------------------------------------------------------------------------
    def node_id(self, node: tuple[int, int] | int) -> int:
        """Node id of ``(x, y)`` (an id is checked and returned)."""
        if isinstance(node, int):
            nid = node
        else:
            x, y = node
            nid = y * self.mesh_x + x if 0 <= x < self.mesh_x and 0 <= y < self.mesh_y else -1
        if not 0 <= nid < self.n_nodes:
            raise ValueError(f"{self.full_name}: node {node!r} is outside the "
                             f"{self.mesh_x}x{self.mesh_y} mesh")
        return nid

    def node_xy(self, nid: int) -> tuple[int, int]:
        return nid % self.mesh_x, nid // self.mesh_x

    def route(self, src, dst) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """The mesh links from ``src`` to ``dst`` in order, as ``((x, y), (x', y'))``: all x
        hops first, then y. Empty for the same node."""
        chans = self.channels(self.node_id(src), self.node_id(dst))[1:-1]
        return [self.link_nodes(c) for c in chans]

    def hops(self, src, dst) -> int:
        """Manhattan distance between two nodes."""
        (x0, y0), (x1, y1) = (self.node_xy(self.node_id(n)) for n in (src, dst))
        return abs(x1 - x0) + abs(y1 - y0)

    def link_nodes(self, channel: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(from node, to node) of mesh-link channel ``channel``."""
        nid, d = divmod(channel, 4)
        x, y = self.node_xy(nid)
        return (x, y), (x + _DIRS[d][0], y + _DIRS[d][1])

    def channel_name(self, channel: int) -> str:
        """Readable name: ``'(0,0)->(1,0)'``, ``'inject(0,0)#5'`` or ``'eject(0,0)#5'`` (a
        local port of agent 5 at node (0,0))."""
        if channel < 4 * self.n_nodes:
            a, b = self.link_nodes(channel)
            return f"({a[0]},{a[1]})->({b[0]},{b[1]})"
        for kind, ports in (("inject", self._inject), ("eject", self._eject)):
            if channel in ports:
                agent = ports.index(channel)
                x, y = self.node_xy(self._agent_node[agent])
                return f"{kind}({x},{y})#{agent}"
        raise ValueError(f"{self.full_name}: no channel {channel}")

    def channels(self, src: int, dst: int) -> tuple[int, ...]:
        """Indices into ``busy_until`` / ``link_busy_cycles`` of the path between node ids
        ``src`` and ``dst``: the nodes' own injection port, XY links, ejection port."""
        return self._path(src, dst)           # agents 0..n-1 are the nodes' own ports

    def _links(self, src: int, dst: int) -> list[int]:
        (x, y), (x1, y1) = self.node_xy(src), self.node_xy(dst)
        links = []
        while x != x1:
            d = 0 if x1 > x else 1
            links.append((y * self.mesh_x + x) * 4 + d)
            x += _DIRS[d][0]
        while y != y1:
            d = 2 if y1 > y else 3
            links.append((y * self.mesh_x + x) * 4 + d)
            y += _DIRS[d][1]
        return links

    def _path(self, src: int, dst: int) -> tuple[int, ...]:
        """Channels from agent ``src`` to agent ``dst``: src's injection port, the XY links
        between their nodes, dst's ejection port (cached)."""
        chans = self._routes.get((src, dst))
        if chans is None:
            links = self._links(self._agent_node[src], self._agent_node[dst])
            chans = self._routes[(src, dst)] = (self._inject[src], *links, self._eject[dst])
        return chans

    def _add_agent(self, nid: int) -> int:
        """A new attachment (an initiator's port, a target's controller) at node ``nid`` with
        its own injection and ejection channels, as a router's local ports are per agent."""
        agent = len(self._agent_node)
        self._agent_node.append(nid)
        for ports in (self._inject, self._eject):
            ports.append(len(self.busy_until))
            self.busy_until.append(0)
            self.link_busy_cycles.append(0)
        return agent

    # -- timing -----------------------------------------------------------------------------
    def flits(self, nbytes: int) -> int:
        """Flits of a packet of ``nbytes`` bytes: ``ceil(nbytes / flit_bytes)``, at least 1."""
        return max(1, -(-nbytes // self.flit_bytes))

    def zero_load_cycles(self, src, dst, nbytes: int) -> int:
        """``hops * (router_cycles + link_cycles) + flits(nbytes)`` (cycles)."""
        return self.hops(src, dst) * (self.router_cycles + self.link_cycles) + self.flits(nbytes)

    def zero_load_ps(self, src, dst, nbytes: int) -> int:
        """Zero-load latency of one packet of ``nbytes`` bytes from ``src`` to ``dst``, head
        injected to tail ejected (ps, rounded up once)."""
        return cycles_to_ps(self.zero_load_cycles(src, dst, nbytes), self.clock_hz)

    def _send(self, src: int, dst: int, nbytes: int, t0: int) -> int:
        """Time one packet from agent ``src`` to agent ``dst`` injected at ``t0`` (ps); update
        channels and counters; returns the time its tail leaves the ejection port (ps)."""
        chans = self._routes.get((src, dst)) or self._path(src, dst)
        S = self.flits(nbytes)
        D, busy, link_busy = self._hop, self.busy_until, self.link_busy_cycles
        ps = self._cycles_ps if S + len(chans) * D < len(self._cycles_ps) else self._ps_of
        last = len(chans) - 1
        # The head's time is base + k cycles; a stall restarts the count at the channel's
        # busy-until, so a contention-free stretch converts cycles to ps exactly once.
        base, k = t0, 0
        marks = [] if self.buffer_flits is not None else None
        for i, c in enumerate(chans):
            if busy[c] > base + ps[k]:
                base, k = busy[c], 0
            busy[c] = base + ps[k + S]                    # claimed for S cycles
            link_busy[c] += S
            if marks is not None:
                marks.append(busy[c])
            if 0 < i < last:
                k += D
        arrival = busy[chans[last]]
        if marks is not None:
            # Wormhole backpressure: a channel is held until the tail can move downstream.
            e = arrival
            for i in range(last - 1, -1, -1):
                e = busy[chans[i]] = max(marks[i], e - self._hold_ps[i > 0])
        hops = last - 1
        cnt = self.count
        cnt["packets"] += 1
        cnt["bytes"] += nbytes
        cnt["byte_hops"] += nbytes * hops
        cnt["queue_ps"] += arrival - t0 - ps[hops * D + S]
        return arrival

    # -- address map ------------------------------------------------------------------------
    def map(self, base: int, size: int, target, node, name: str,
            interleave_bytes: int = 256) -> InitiatorSocket:
        """Attach ``target`` (a ``TargetSocket`` or an object with the forward interface) at
        ``node`` for ``[base, base + size)`` (bytes). Refuses overlaps (``AddressMapError``).

        ``node`` may be a list of nodes: an interleaved target such as HBM with a controller
        per stack. Granule ``g`` of ``interleave_bytes`` (counted from ``base``) then lives at
        node ``g % len(nodes)``; a transaction sends each node the bytes of its granules on
        that node's route (nodes holding none of them see no packet), and completes when the
        last share does."""
        nodes = node if isinstance(node, list) else [node]
        nids = [self.node_id(n) for n in nodes]
        sock = self._decoder.map(base, size, target, name)
        self._targets[base] = (tuple(self._add_agent(n) for n in nids), sock, interleave_bytes)
        return sock

    def ranges(self) -> list[tuple[str, int, int, tuple[int, int]]]:
        """(name, base, size, node) of every mapping, in address order."""
        return [(n, b, s, self.node_xy(self._agent_node[self._targets[b][0][0]]))
                for n, b, s in self._decoder.ranges()]

    def node_of(self, address: int, length: int = 1) -> tuple[int, int] | None:
        """The node of the target holding ``[address, address + length)``, or None."""
        hit = self._decoder.decode(address, max(length, 1))
        return None if hit is None else \
            self.node_xy(self._agent_node[self._targets[hit[1]][0][0]])

    def port(self, node, name: str) -> TargetSocket:
        """A new entry port at ``node`` for one initiator to bind to."""
        if name in self._ports:
            raise ValueError(f"{self.full_name} already has a port named {name!r}")
        port = self._ports[name] = _Port(self, self._add_agent(self.node_id(node)), name)
        return port.socket

    # -- forward path -----------------------------------------------------------------------
    def _transport(self, src: int, trans: Payload, delay_ps: int) -> int:
        address, length = trans.address, trans.length
        hit = self._decoder.decode(address, length if length > 1 else 1)
        if hit is None:
            self.count["address_errors"] += 1
            trans.response = _ADDRESS_ERROR
            return delay_ps
        base = hit[1]
        nodes, sock, granule = self._targets[base]
        self.count["transactions"] += 1
        now, command = self.sim.now, trans.command
        t0 = now + delay_ps
        offset = address - base
        if not self._one_pass:                  # wormhole backpressure: packet by packet
            return self._transport_packets(src, trans, sock, now, t0, offset,
                                           self._shares(offset, length, nodes, granule))
        ways = len(nodes)
        rel = offset % (ways * granule) if ways > 1 else 0   # the split repeats with this
        fans, fb = self._fans, self.flit_bytes
        # Each direction of the transaction is timed in one pass over its packets (an
        # interleaved target's fan-out to its nodes), the per-channel rule of _send.
        key = (src, base, rel, length, 0, 0 if command is _WRITE else fb)
        t = self._fan(fans.get(key) or self._fan_of(key), t0)
        trans.address = offset
        try:
            t = now + sock.b_transport(trans, t - now)
        finally:
            trans.address = address
        if command is _READ:
            key = (src, base, rel, length, 1, 0 if trans.response == _OK else fb)
            t = self._fan(fans.get(key) or self._fan_of(key), t)
        return t - now

    def _plan(self, src: int, base: int) -> list:
        """Per node (way) of the target at ``base``: the routes from agent ``src`` there and
        back, each ``(injection port, mesh links, ejection port, hops, route id)`` (cached)."""
        plan = []
        for dst in self._targets[base][0]:
            pair = []
            for chans in (self._path(src, dst), self._path(dst, src)):
                rid = self._route_ids.get(chans)
                if rid is None:
                    rid = self._route_ids[chans] = len(self._route_chans)
                    self._route_chans.append(chans)
                    self._route_flits.append(0)
                pair.append((chans[0], chans[1:-1], chans[-1], len(chans) - 2, rid))
            plan.append(tuple(pair))
        self._plans[(src, base)] = plan
        return plan

    def _fan_of(self, key: tuple) -> _Fan:
        """Compile (and cache) one direction of a transaction, ``key = (src agent, target
        base, offset modulo the target's interleave span, length, back, size)``: one packet per
        share ``(way, bytes)`` of the range in way order, on the plan's routes there (``back``
        0) or back (1), each of ``size`` bytes (0: the share's bytes). Its stall-free timing is
        the rule of :meth:`_send` run relative to ``t0 = 0`` on channels free before."""
        src, base, rel, length, back, size = key
        plan = self._plans.get((src, base)) or self._plan(src, base)
        ways, granule = len(self._targets[base][0]), self._targets[base][2]
        shares = self._shares(rel, length, tuple(range(ways)), granule)
        ps, D = self._ps_of, self._hop
        fan = _Fan()
        packets, free, ends, flits = [], {}, {}, {}
        fan.latest = arrivals = fan.nbytes = fan.byte_hops = fan.zero_ps = 0
        for way, nbytes in shares:
            c0, links, ce, hops, rid = plan[way][back]
            nbytes = size or nbytes
            S = self.flits(nbytes)
            later = (*links, ce)
            head = tuple(ps[j * D] for j in range(len(later)))
            tail = tuple(ps[j * D + S] for j in range(len(later)))
            packets.append((c0, later, head, tail))
            if c0 not in ends:
                free[c0] = 0
            t = ends.get(c0, 0)                 # the packet's base time, from t0
            ends[c0] = t + tail[0]
            j = 0
            for c in later:
                if c not in ends:
                    free[c] = t + head[j]
                elif ends[c] > t + head[j]:     # held up by an earlier packet of the pass
                    t, j = ends[c], 0
                ends[c] = t + tail[j]
                j += 1
            arrivals += ends[ce]
            fan.latest = max(fan.latest, ends[ce])
            flits[rid] = flits.get(rid, 0) + S
            fan.nbytes += nbytes
            fan.byte_hops += nbytes * hops
            fan.zero_ps += ps[hops * D + S]
        fan.packets, fan.n = tuple(packets), len(packets)
        fan.free, fan.ends = tuple(free.items()), tuple(ends.items())
        fan.queued = arrivals - fan.zero_ps
        fan.flits, fan.used = tuple(flits.items()), 0
        if len(self._fans) >= 4096:
            self._fold_fans()
            self._fans.clear()
        self._fans[key] = fan
        return fan

    def _fan(self, fan: _Fan, t0: int) -> int:
        """Time ``fan``'s packets, all injected at ``t0`` (ps), in order: the per-channel rule of
        :meth:`_send`. Returns the latest arrival (ps)."""
        busy = self.busy_until
        for c, h in fan.free:
            if busy[c] > t0 + h:                # held up by earlier traffic: packet by packet
                latest = arrivals = 0
                for c0, later, head, tail in fan.packets:
                    base = busy[c0]             # injection port: no head delay after it
                    if base < t0:
                        base = t0
                    busy[c0] = base + tail[0]
                    j = 0
                    for c in later:             # the head is at base + head[j]
                        b = busy[c]
                        if b > base + head[j]:  # stalled: the count restarts at busy-until
                            base, j = b, 0
                        busy[c] = base + tail[j]
                        j += 1
                    arrival = busy[c]
                    arrivals += arrival
                    if arrival > latest:
                        latest = arrival
                queued = arrivals - fan.n * t0 - fan.zero_ps
                break
        else:                                   # every channel free in time: as compiled
            for c, d in fan.ends:
                busy[c] = t0 + d
            latest, queued = t0 + fan.latest, fan.queued
        fan.used += 1
        cnt = self.count
        cnt["packets"] += fan.n
        cnt["bytes"] += fan.nbytes
        cnt["byte_hops"] += fan.byte_hops
        cnt["queue_ps"] += queued
        return latest

    def _fold_fans(self) -> None:
        """Add the flits of every use of a compiled pass to its routes."""
        route_flits = self._route_flits
        for fan in self._fans.values():
            if fan.used:
                for rid, n in fan.flits:
                    route_flits[rid] += n * fan.used
                fan.used = 0

    @property
    def link_busy_cycles(self) -> list[int]:
        """Per channel: cycles spent carrying flits (plain ints)."""
        self._fold_fans()
        flits, chans, lb = self._route_flits, self._route_chans, self._link_busy
        for rid, n in enumerate(flits):
            if n:
                for c in chans[rid]:
                    lb[c] += n
                flits[rid] = 0
        return lb

    @link_busy_cycles.setter
    def link_busy_cycles(self, value: list[int]) -> None:
        self._link_busy = value
        self._route_flits = [0] * len(self._route_chans)
        for fan in self._fans.values():         # (uses so far are replaced too)
            fan.used = 0

    def _transport_packets(self, src: int, trans: Payload, sock, now: int, t0: int,
                           offset: int, shares) -> int:
        """:meth:`_transport` one :meth:`_send` per packet (the wormhole option)."""
        address, command = trans.address, trans.command
        if command is _WRITE:
            t = max(self._send(src, d, n, t0) for d, n in shares)
        else:
            t = max(self._send(src, d, self.flit_bytes, t0) for d, _ in shares)
        trans.address = offset
        try:
            t = now + sock.b_transport(trans, t - now)
        finally:
            trans.address = address
        if command is _READ:
            ok = trans.response == _OK
            t = max(self._send(d, src, n if ok else self.flit_bytes, t) for d, n in shares)
        return t - now

    @staticmethod
    def _shares(offset: int, nbytes: int, nodes: tuple[int, ...],
                granule: int) -> list[tuple[int, int]]:
        """(node id, bytes) for each node holding bytes of ``[offset, offset + nbytes)``;
        granule g lives on ``nodes[g % len(nodes)]``. A zero-length access visits the node of
        its first granule."""
        ways = len(nodes)
        first = offset // granule
        if ways == 1 or nbytes == 0:
            return [(nodes[first % ways], nbytes)]
        last = (offset + nbytes - 1) // granule
        rounds, extra = divmod(last - first + 1, ways)
        share = [0] * ways
        for i in range(min(ways, last - first + 1)):
            share[(first + i) % ways] = (rounds + (i < extra)) * granule
        share[first % ways] -= offset - first * granule                  # partial first granule
        share[last % ways] -= (last + 1) * granule - (offset + nbytes)     # partial last granule
        return [(nodes[w], n) for w, n in enumerate(share) if n]

    def _dmi(self, src: int, trans: Payload) -> DmiRegion | None:
        region = self._up.get_direct_mem_ptr(trans)
        if region is None:
            return None
        dst = self._agent_node[self._targets[self._decoder.decode(trans.address)[1]][0][0]]
        src = self._agent_node[src]
        there, back = (self.zero_load_ps(src, dst, 1), self.zero_load_ps(dst, src, 1))
        return replace(region, read_latency_ps=region.read_latency_ps + there + back,
                       write_latency_ps=region.write_latency_ps + there)

    def _invalidate(self, start: int, end: int) -> None:
        for port in self._ports.values():
            port.socket.invalidate_direct_mem_ptr(start, end)

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        """All channels idle, counters zero (the address map and ports stay)."""
        channels = 4 * self.n_nodes + 2 * len(self._agent_node)   # links + local ports
        self.busy_until = [0] * channels
        self.link_busy_cycles = [0] * channels
        self.count = dict.fromkeys(COUNTERS, 0)
        self._hop = self.router_cycles + self.link_cycles
        # Without backpressure a transaction's packets are timed in one pass (_fan); with it
        # (or when a test asks for the reference) one _send per packet.
        self._one_pass = self.buffer_flits is None
        if self.buffer_flits is not None:   # how far a tail may trail: injection, link
            self._hold_ps = (cycles_to_ps(self.buffer_flits, self.clock_hz),
                             cycles_to_ps(self._hop + self.buffer_flits, self.clock_hz))
        super().reset()

    def state(self) -> dict:
        """Plain-data snapshot of the timing state and counters."""
        return {"busy_until": list(self.busy_until),
                "link_busy_cycles": list(self.link_busy_cycles), "count": dict(self.count)}

    def load_state(self, state: dict) -> None:
        if len(state["busy_until"]) != len(self.busy_until):
            raise ValueError(f"{self.full_name}: snapshot is of a different mesh")
        self.busy_until = list(state["busy_until"])
        self.link_busy_cycles = list(state["link_busy_cycles"])
        self.count = dict(state["count"])

    def counters(self) -> dict[str, int]:
        """Counters as flat ints for the stats call, plus the total and the busiest mesh-link
        busy cycles (``link_busy_cycles``, ``max_link_busy_cycles``)."""
        links = self.link_busy_cycles[:4 * self.n_nodes]
        return {**self.count, "link_busy_cycles": sum(links), "max_link_busy_cycles": max(links)}

    def link_utilisation(self, elapsed_ps: int) -> dict[str, float]:
        """Per used channel: fraction of ``elapsed_ps`` spent carrying flits (<= 1)."""
        cycles = elapsed_ps * self.clock_hz / SEC
        return {self.channel_name(c): n / cycles for c, n in enumerate(self.link_busy_cycles)
                if n and cycles}
