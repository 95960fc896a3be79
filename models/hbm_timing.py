"""HBM timing at transaction level: geometry, timing parameters, address mapping, and the
analytic service model of the pseudo-channels (pure Python, no kernel; used by ``models/hbm.py``).

Address mapping (system offset inside HBM -> stack, channel, pseudo-channel, bank, row, column),
``g = interleave_bytes``, ``n = stacks * channels_per_stack * pseudo_channels``::

    G  = offset // g                        granule
    pc = G % n                              pseudo-channel index, round-robin over ALL of them:
         stack = pc % stacks                  stacks fastest (spreads the NoC controllers),
         channel = pc // stacks % channels    then channels,
         pseudo_channel = pc // (stacks * channels)   then pseudo-channels
    L  = G // n                             granule index inside its pseudo-channel
         bank = L % banks                     then banks,
         row = L // banks // (row_bytes // g)   then rows;
         column = L // banks % (row_bytes // g) * g + offset % g   (byte inside the row)

With the HBM3 defaults (all powers of two) this is the bit slicing
``row[..:21] col[20:19] bank[18:15] pc[14] ch[13:10] stack[9:8] byte[7:0]``.

Timing of one transaction (times in ps; parameters rounded up to whole ``tCK`` like a memory
controller programs them). The byte range, widened to whole bursts, is split arithmetically
into one contiguous *share* per touched pseudo-channel (a contiguous range gives every
pseudo-channel either q or q+1 granules); each share is served by its pseudo-channel, an
in-order pipeline of two stages, and the transaction completes when the last share does:

* rows: a share touches a known set of (bank, row) pairs, counted per bank without visiting
  granules. A pair whose row is open is a hit; otherwise it is an activation (a miss).
  The first access of the share costs ``tCL`` on a hit, ``tRCD + tCL`` on a closed bank and
  ``tRP + tRCD + tCL`` when another row is open (precharge no earlier than ``tRAS`` after that
  row's activation). Open-page policy: the last row touched in each bank stays open.
* data: the pseudo-channel's data bus moves the share at ``channel_bandwidth`` after the first
  data is ready and the bus is free (``bus_free``, the busy-until of the pseudo-channel).
* the other activations of the share overlap the data transfer (bank parallelism) but cannot
  issue faster than one per ``tACT = max(tRRD, tFAW / 4)`` on the pseudo-channel, nor reopen a
  bank sooner than ``tRC = tRAS + tRP``: ``done >= last activation + tRCD + tCL + one granule``.
  Successive transactions pipeline the same way: the latency of the next share overlaps the
  data of the previous one, so sequential traffic is bound by the data bus.
* order: each pseudo-channel serves in arrival order (FCFS, no reordering; ``act_free`` and
  ``bus_free`` are its busy-until times): an access to a bank within ``tRC`` of its last
  activation holds up the ones behind it, so random single-burst traffic runs well below
  the activation-rate bound (a pessimistic, FCFS controller).
* refresh: every pseudo-channel refreshes all banks in the windows
  ``[k * tREFI, k * tREFI + tRFC)`` for ``k >= 1`` (deterministic, from time 0, all channels
  together). Nothing issues inside a window; latency and transfer are stretched by every window
  they overlap; a refresh closes every row.

A read's completion is when its last byte is available, a write's when its last byte is
written (writes use the read timing: write latency and turnaround are not modelled).
Approximations, all deterministic: activation times of the banks inside a multi-bank share are
estimated from where their data falls in the transfer (exact for the first access); rows that a
refresh closes in the middle of a share count one extra activation per touched bank and window.

Cost (what makes performance mode affordable; :mod:`vp.bench.hbm_bench` measures it): no loop
over granules, bursts or banks in Python. A range of up to ``SCALAR_SHARES`` granules is served
share by share on scalars in one loop (~1.5 us + ~0.5 us a granule); a longer one in one numpy
pass over its shares, banks as a second axis (~15-50 us whatever the length, +~10 us when its
decomposition, a function of (offset mod one row group of every pseudo-channel, length), is not
cached). Pseudo-channels known to be in the same state (a fresh model, aligned streams) are served as groups: one share
computed on scalars and copied over the group, ~3-15 us a burst. Every path does the same
integer arithmetic as the rules above; a test replays recorded traffic against the original
share-by-share implementation.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from vp.spec.units import KIB, NS, SEC, transfer_ps


@dataclass(frozen=True)
class HbmGeometry:
    """How HBM is organised. Sizes in bytes; counts per parent level.

    Defaults: an HBM3-class stack (JESD238) has 16 independent 64-bit channels, each split into
    2 pseudo-channels of 32 bits with 16 banks (4 bank groups x 4) per pseudo-channel visible
    to the controller and a 1 KiB page (row) per pseudo-channel. Four stacks (64 GiB with 16 GiB
    stacks) match the default board's capacity. A 256 B interleave granule keeps a 64 B line in
    one pseudo-channel while a 32 KiB stream already spreads over all 128; 64 B is the access
    granule of a 32-bit pseudo-channel with BL8 twice over (two column commands).
    """

    stacks: int = 4
    channels_per_stack: int = 16
    pseudo_channels: int = 2
    banks: int = 16
    row_bytes: int = 1 * KIB
    interleave_bytes: int = 256
    burst_bytes: int = 64

    def __post_init__(self):
        for name in ("stacks", "channels_per_stack", "pseudo_channels", "banks", "row_bytes",
                     "interleave_bytes", "burst_bytes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"HbmGeometry.{name} must be a positive integer")
        if self.interleave_bytes % self.burst_bytes:
            raise ValueError("HbmGeometry: interleave_bytes must be a multiple of burst_bytes")
        if self.row_bytes % self.interleave_bytes:
            raise ValueError("HbmGeometry: row_bytes must be a multiple of interleave_bytes")

    @property
    def n_channels(self) -> int:
        """Channels over all stacks."""
        return self.stacks * self.channels_per_stack

    @property
    def n_pseudo_channels(self) -> int:
        """Pseudo-channels over all stacks: the units of bandwidth."""
        return self.n_channels * self.pseudo_channels

    @property
    def granules_per_row(self) -> int:
        return self.row_bytes // self.interleave_bytes

    def decode(self, offset: int) -> tuple[int, int, int, int, int, int]:
        """(stack, channel, pseudo_channel, bank, row, column) of byte ``offset`` (see module
        docstring). ``channel`` counts inside its stack; ``column`` is the byte in the row."""
        g, n = self.interleave_bytes, self.n_pseudo_channels
        s, c = self.stacks, self.channels_per_stack
        granule, byte = divmod(offset, g)
        pc, local = granule % n, granule // n
        rest, bank = divmod(local, self.banks)
        row, col = divmod(rest, self.granules_per_row)
        return pc % s, pc // s % c, pc // (s * c), bank, row, col * g + byte

    def encode(self, stack: int, channel: int, pseudo_channel: int, bank: int, row: int,
               column: int = 0) -> int:
        """Inverse of :meth:`decode`: the byte offset of a location."""
        g = self.interleave_bytes
        pc = stack + self.stacks * (channel + self.channels_per_stack * pseudo_channel)
        local = bank + self.banks * (column // g + self.granules_per_row * row)
        return (pc + self.n_pseudo_channels * local) * g + column % g

    def channel_of(self, pc: int) -> int:
        """Global channel id (``stack * channels_per_stack + channel``) of pseudo-channel ``pc``."""
        s, c = self.stacks, self.channels_per_stack
        return pc % s * c + pc // s % c


@dataclass(frozen=True)
class HbmTiming:
    """DRAM timing; times in ps (rounded up to whole ``tCK = 1 / clock_hz`` when used),
    ``channel_bandwidth`` in bytes/s per pseudo-channel.

    Defaults: HBM3 at 6.4 Gb/s per pin has a 1.6 GHz command clock (data on WDQS/RDQS at twice
    CK, double rate); a 32-bit pseudo-channel moves 6.4 Gb/s x 32 / 8 = 25.6 GB/s (819.2 GB/s
    per stack). tRCD, tCL (read latency) and tRP of ~14 ns and tRAS of 33 ns are the usual
    DRAM core figures (npu.md §4); tREFI = 3.9 us and all-bank tRFC = 350 ns are those of
    16 Gb dies (refresh costs 9 % of time). tRRD_S = 2 ns and tFAW = 16 ns bound the
    activation rate (four per window), as in common HBM2/HBM3 device configurations.
    """

    clock_hz: int = 1_600_000_000
    tRCD: int = 14 * NS
    tCL: int = 14 * NS
    tRP: int = 14 * NS
    tRAS: int = 33 * NS
    tREFI: int = 3900 * NS
    tRFC: int = 350 * NS
    channel_bandwidth: int = 25_600_000_000
    tRRD: int = 2 * NS
    tFAW: int = 16 * NS

    def __post_init__(self):
        for name in ("clock_hz", "channel_bandwidth", "tREFI"):
            if getattr(self, name) <= 0:
                raise ValueError(f"HbmTiming.{name} must be positive")
        for name in ("tRCD", "tCL", "tRP", "tRAS", "tRFC", "tRRD", "tFAW"):
            if getattr(self, name) < 0:
                raise ValueError(f"HbmTiming.{name} cannot be negative")
        if self.q("tRFC") >= self.q("tREFI"):
            raise ValueError("HbmTiming: tRFC must be shorter than tREFI")

    @property
    def tck_ps(self) -> float:
        return SEC / self.clock_hz

    def cycles(self, name: str) -> int:
        """Parameter ``name`` in whole clock cycles (rounded up)."""
        return -(-getattr(self, name) * self.clock_hz // SEC)

    def q(self, name: str) -> int:
        """Parameter ``name`` rounded up to whole cycles, in ps."""
        return -(-self.cycles(name) * SEC // self.clock_hz)

    @property
    def t_act_ps(self) -> int:
        """Minimum spacing of activations on one pseudo-channel: max(tRRD, tFAW / 4)."""
        return max(self.q("tRRD"), -(-self.q("tFAW") // 4))


# -- formulas the validation compares against (DESIGN.md §7) ----------------------------------

def peak_bandwidth(geometry: HbmGeometry, timing: HbmTiming) -> int:
    """All pseudo-channels streaming (bytes/s)."""
    return geometry.n_pseudo_channels * timing.channel_bandwidth


def refresh_limited_peak(geometry: HbmGeometry, timing: HbmTiming) -> float:
    """Peak bandwidth x (1 - tRFC / tREFI) (bytes/s)."""
    return peak_bandwidth(geometry, timing) * (1 - timing.q("tRFC") / timing.q("tREFI"))


def row_miss_formula_ps(timing: HbmTiming) -> int:
    """(tRP + tRCD + tCL) * tCK: first data of an access to a bank with another row open."""
    return -(-(timing.cycles("tRP") + timing.cycles("tRCD") + timing.cycles("tCL")) * SEC
             // timing.clock_hz)


def burst_transfer_ps(geometry: HbmGeometry, timing: HbmTiming) -> int:
    """Time one burst occupies a pseudo-channel's data bus."""
    return transfer_ps(geometry.burst_bytes, timing.channel_bandwidth)


# -- the service model -----------------------------------------------------------------------

_I64 = np.int64
#: First/last row of a bank a share does not touch: never equal to an open row (>= -1).
_UNTOUCHED = -(1 << 40)


class _Shares:
    """The decomposition of a burst range of at least one granule per pseudo-channel into its
    ``m`` shares (module docstring), as numpy arrays indexed by pseudo-channel. Rows are
    relative to the range's row group: the mapping repeats one row higher every ``period``
    bytes, so a decomposition is a function of (offset mod period, length) and is cached.
    Per-share fields are Python ints and per-bank fields (1, banks) rows when every share has
    the same pattern (aligned ranges).
    """

    __slots__ = ("m", "b0flat", "r0", "first_rows", "last_rows", "offsets", "touched",
                 "update_if_new", "update_always", "update_all", "pairs", "pairs_total",
                 "row_cycle", "nbanks", "max_offset", "last_is_r0", "work", "first_work",
                 "bursts", "bursts_total")


class _Patterns:
    """Row patterns of the (up to four) kinds of share of one range: local granules
    ``[a, a+k)`` for ``a`` in (A, A+1) and ``k`` in (q, q+1), kind ``c = 2 * (a - A) + k - q``.
    ``rows`` (3 x kind x banks): first row (``_UNTOUCHED`` where the share misses the bank),
    last row, data offset (ps) of the last row's first granule. ``flags`` (3 x kind x banks):
    touched; activation time rewritten only on a new first row; always rewritten (the bank
    visits several rows). ``fields`` (9 x kind): bank of ``a``, row of ``a``, (bank, row)
    pairs, longest row chain x tRC, banks touched, latest offset, data time of ``k`` granules,
    of the first granule, bursts. ``last_is_r0`` (kind): the first bank's last row is
    ``a``'s row. ``touched_all`` / ``always_all`` / ``always_any``: per kind, over banks.
    ``rows0`` / ``flags0`` / ``scalars``: kind 0's rows, flags and first six fields (+
    ``last_is_r0``) unpacked, for the paths serving one share."""

    __slots__ = ("rows", "flags", "fields", "last_is_r0", "touched_all", "always_all",
                 "always_any", "aligned", "rows0", "flags0", "scalars")


#: (geometry, timing) -> (decompositions, row patterns, share layouts): pure functions of their
#: keys, bounded in size (see ``HbmArray.CACHE_ENTRIES``, ``LAYOUT_ENTRIES``).
_CACHES: dict[tuple, tuple[OrderedDict, dict, OrderedDict]] = {}


class HbmArray:
    """Timing state of every pseudo-channel, plain data, and the analytic service model.

    State (numpy ``int64`` arrays indexed by pseudo-channel): ``bus_free`` (busy-until of the
    data bus, ps), ``act_free`` (earliest next activation, ps), ``epoch`` (refresh interval of
    the last use), ``open_row`` / ``act_at`` (pseudo-channel x bank: open row or -1, time of
    its last activation), ``pc_busy_ps`` (data-bus occupancy). Counters: ``activations``,
    ``row_hits``, ``row_misses`` (in bursts: hits + misses = bursts moved; every miss is one
    activation), ``refreshes`` (all-bank refreshes of all pseudo-channels up to the latest time
    seen), ``refresh_stalls`` (shares delayed by one), ``channel_busy_ps`` (per global channel:
    data-bus occupancy summed over its pseudo-channels), ``steps`` (Python work: 1 per share
    served one by one, 1 per vectorised pass over many shares).

    How it is computed (the same integer arithmetic as the per-share rules in the module
    docstring, in three shapes): a range of a few granules is served share by share on scalars
    (:meth:`_granule_server`); a longer one in one numpy pass over its shares
    (:meth:`_serve_line` for fewer granules than pseudo-channels, :meth:`_serve_shares` with
    banks as a second axis otherwise), its decomposition taken from a cache keyed by (offset mod
    ``period``, length) (whole-granule ranges: views of the layout of their kinds of share, kept
    with it, :meth:`_layout`); and while the pseudo-channels fall into a few groups of identical state
    (``_cuts``: the first pseudo-channel of each group; None once there are too many), a run of
    identical shares over a group is computed once on scalars and copied over the group
    (:meth:`_serve_pieces`). The groups are a cache too: dropped when they fragment, found
    again (:meth:`_recut`) after a pass over every pseudo-channel leaves few distinct states.
    """

    COUNTERS = ("activations", "row_hits", "row_misses", "refreshes", "refresh_stalls")
    #: Ranges of at most this many granules (single-granule shares) are served one by one.
    SCALAR_SHARES = 24
    #: Pseudo-channels are tracked as at most this many groups of identical state.
    GROUPS_MAX = 32
    #: ... and found again after a pass over all of them when at most this many.
    RECUT_MAX = 6
    #: Rough cost (us) of one numpy pass over every pseudo-channel: groups are served one by
    #: one (each ~7 us for a long share, ~1 us for a granule, + ~2.5 us to copy it over the
    #: group) when that is estimated cheaper.
    VECTOR_COST = 36
    #: At most this many groups of pseudo-channels in the same timing state for a range over
    #: all of them to be tried share by share when they are cold (:meth:`_serve_cold`).
    COLD_PIECES = 8
    #: Decompositions kept (least recently used dropped): each is a few shares x banks arrays.
    CACHE_ENTRIES = 256
    #: Row patterns kept (all dropped when full): each a few KB.
    PATTERN_ENTRIES = 16 * 256
    #: Share layouts kept (:meth:`_layout`, least recently used dropped): each ~110 KB with
    #: the HBM3 defaults, + ~1 KB per decomposition kept with it.
    LAYOUT_ENTRIES = 64

    def __init__(self, geometry: HbmGeometry, timing: HbmTiming):
        self.geometry, self.timing = geometry, timing
        g = geometry
        self._n, self._B, self._g, self._bb = (g.n_pseudo_channels, g.banks, g.interleave_bytes,
                                               g.burst_bytes)
        self._group = g.banks * g.granules_per_row   # granules of one row index over all banks
        self._period = self._n * g.interleave_bytes * self._group   # bytes: rows + 1
        self._bw = timing.channel_bandwidth
        self._rcd, self._cl, self._rp, self._ras = (timing.q(name) for name in
                                                    ("tRCD", "tCL", "tRP", "tRAS"))
        self._refi, self._rfc = timing.q("tREFI"), timing.q("tRFC")
        self._avail = self._refi - self._rfc
        self._act = timing.t_act_ps
        self._xg = transfer_ps(g.interleave_bytes, self._bw)
        n, B = self._n, self._B
        self.bus_free = np.zeros(n, _I64)
        self.act_free = np.zeros(n, _I64)
        self.epoch = np.zeros(n, _I64)
        self._open_row = np.full((n, B), -1, _I64)
        self._act_at = np.zeros((n, B), _I64)
        self.pc_busy_ps = np.zeros(n, _I64)
        # Bank writes of cold shares not yet applied to open_row / act_at (_serve_cold), and
        # data-bus busy time not yet added to every pseudo-channel's pc_busy_ps.
        self._banks_due: list[tuple] = []
        self._busy_all = 0
        # Scalar views of the same memory (Python ints in and out, list-speed indexing).
        self._mv = tuple(memoryview(a.reshape(-1)) for a in (
            self.bus_free, self.act_free, self.epoch, self._open_row, self._act_at,
            self.pc_busy_ps))
        self._closed_row = memoryview(np.full(B, -1, _I64))
        self._open_flat, self._act_flat = self._open_row.reshape(-1), self._act_at.reshape(-1)
        self._wrap = np.arange(2 * n) % n       # pcs of consecutive granules from any pc
        self._arB = np.arange(n, dtype=_I64) * B
        # Bools of a bank row as 64-bit words, counted by popcount (numpy >= 2).
        self._words = B // 8 if B % 8 == 0 and hasattr(np, "bitwise_count") else 0
        # Decompositions and row patterns depend on the geometry and timing only: shared by
        # every model built with the same ones (e.g. each repetition of a benchmark).
        self._cache, self._pattern_cache, self._layout_cache = _CACHES.setdefault(
            (geometry, timing), (OrderedDict(), {}, OrderedDict()))
        self._serve_granule = self._granule_server()
        self._xfer_granule = transfer_ps(g.interleave_bytes, self._bw)
        self.reset()

    def reset(self, now: int = 0) -> None:
        """All rows closed, pseudo-channels idle, counters zero (refreshes counted from ``now``)."""
        self._banks_due = []
        self._busy_all = 0
        for a in (self.bus_free, self.act_free, self.epoch, self._act_at, self.pc_busy_ps):
            a.fill(0)
        self._open_row.fill(-1)
        self.activations = self.row_hits = self.row_misses = 0
        self.refreshes = self.refresh_stalls = self.steps = 0
        self._seen_epoch = now // self._refi
        # Starts of the groups of pseudo-channels in the same state (all one group now).
        self._cuts = [0] if self.GROUPS_MAX else None
        self._tcuts = [0]        # the same for the timing state only (see _serve_cold)

    @property
    def channel_busy_ps(self) -> list[int]:
        """Per global channel (``stack * channels_per_stack + channel``): data-bus busy time
        summed over its pseudo-channels (ps)."""
        g = self.geometry
        self._fold_busy()
        per = self.pc_busy_ps.reshape(g.pseudo_channels, g.channels_per_stack, g.stacks)
        return per.sum(axis=0).T.reshape(-1).tolist()

    def counters(self) -> dict[str, int]:
        """The DRAM counters as plain ints; channel busy time as its sum and its maximum."""
        out = {name: getattr(self, name) for name in self.COUNTERS}
        busy = self.channel_busy_ps
        out["busy_ps"] = sum(busy)
        out["max_channel_busy_ps"] = max(busy)
        return out

    def state(self) -> dict:
        """Plain-data snapshot of the timing state (counters included)."""
        self._fold_busy()
        return {"bus_free": self.bus_free.tolist(), "act_free": self.act_free.tolist(),
                "epoch": self.epoch.tolist(), "open_row": self.open_row.tolist(),
                "act_at": self.act_at.tolist(), "seen_epoch": self._seen_epoch,
                "counters": self.counters(), "channel_busy_ps": self.channel_busy_ps,
                "pc_busy_ps": self.pc_busy_ps.tolist(), "steps": self.steps}

    def load_state(self, state: dict) -> None:
        """Restore a snapshot taken by :meth:`state` (of an array with the same geometry)."""
        n, B = self._n, self._B
        if len(state["bus_free"]) != n or len(state["open_row"][0]) != B:
            raise ValueError("HBM snapshot is of a different geometry")
        self._banks_due, self._busy_all = [], 0
        for name in ("bus_free", "act_free", "epoch", "open_row", "act_at", "pc_busy_ps"):
            getattr(self, name)[...] = np.array(state[name], _I64)
        for name in self.COUNTERS:
            setattr(self, name, int(state["counters"][name]))
        self._seen_epoch, self.steps = int(state["seen_epoch"]), int(state["steps"])
        self._cuts = None                       # groups unknown: found again when they exist
        self._tcuts = None

    def __getstate__(self) -> dict:
        # (pickle / deepcopy) plain data only: the scalar views and the closure over them are
        # rebuilt around the new arrays.
        return {"geometry": self.geometry, "timing": self.timing, "state": self.state()}

    def __setstate__(self, st: dict) -> None:
        self.__init__(st["geometry"], st["timing"])
        self.load_state(st["state"])

    @property
    def open_row(self) -> np.ndarray:
        """Pseudo-channel x bank: the open row, or -1 (int64; updated in place)."""
        if self._banks_due:
            self._write_banks()
        return self._open_row

    @property
    def act_at(self) -> np.ndarray:
        """Pseudo-channel x bank: the time of the last activation (ps, int64)."""
        if self._banks_due:
            self._write_banks()
        return self._act_at

    def _write_banks(self) -> None:
        """Apply the bank writes of cold shares (:meth:`_serve_cold`), in order: per piece of
        pseudo-channels, the rows it leaves open and their activation times."""
        opens, acts = self._open_row, self._act_at
        for x0, x1, p, rb, base, s, act in self._banks_due:
            _, last_rows, offsets = p.rows0
            t = np.add(offsets, base)
            np.maximum(t, s, out=t)
            rows = last_rows + rb if rb else last_rows
            if p.touched_all[0]:
                acts[x0:x1] = t
                opens[x0:x1] = rows
            else:
                touched = p.flags0[0]
                np.copyto(acts[x0:x1], t, where=touched)
                opens[x0:x1] = np.where(touched, rows, -1)
            if act is not None:
                acts[x0:x1, p.scalars[0]] = act
        self._banks_due = []

    def _fold_busy(self) -> None:
        if self._busy_all:
            self.pc_busy_ps += self._busy_all
            self._busy_all = 0

    def sync_refreshes(self, t: int) -> None:
        """Count the refreshes every pseudo-channel performed up to time ``t``."""
        e = t // self._refi
        if e > self._seen_epoch:
            self.refreshes += (e - self._seen_epoch) * self._n
            self._seen_epoch = e

    def access(self, offset: int, length: int, arrival: int) -> int:
        """Serve ``length`` bytes at ``offset`` arriving at ``arrival``; returns the time the
        last byte is done (ps)."""
        if length <= 0:
            return arrival
        bb, g, n, refi = self._bb, self._g, self._n, self._refi
        lo, hi = offset // bb * bb, -(-(offset + length) // bb) * bb
        first = lo // g
        count = (hi - 1) // g - first + 1
        e = arrival // refi                     # s: arrival, or the end of its refresh window
        s = e * refi + self._rfc if e and arrival - e * refi < self._rfc else arrival
        cuts = self._cuts
        if count == 1 or count < n and count <= self.SCALAR_SHARES:
            # A few granules, one share each: the small-access hot path.
            if self._banks_due:
                self._write_banks()
            done = None
            if count >= 8 and cuts is not None and self._groups_in(first % n, count) * 4 <= count:
                done = self._serve_pieces(self._runs(lo, hi, first, count), s, arrival,
                                          min(count * 1.1, 25))
            if done is None:                    # one by one on scalars
                front, back = lo - first * g, (first + count) * g - hi
                done, misses, stalls = self._serve_granule(first, count, front, back, s,
                                                           s != arrival)
                self.activations += misses
                self.row_misses += misses
                self.row_hits -= misses
                self.refresh_stalls += stalls
                self.steps += count
                if cuts is not None or self._tcuts is not None:
                    self._cut_granules(first, count, front, back)
        else:
            done = runs = None
            busy = self._mv[0][0]
            if count >= n and (busy if busy > s else s) // refi > self._mv[2][0]:
                # Every pseudo-channel, the first one cold (refreshed since its last use):
                # maybe all of them, then served on scalars.
                if self._tcuts is None:
                    self._retcut()
                if self._tcuts is not None and len(self._tcuts) <= self.COLD_PIECES:
                    runs = self._runs(lo, hi, first, count)
                    done = self._serve_cold(runs, s, arrival)
            if done is None and self._banks_due:
                self._write_banks()             # (the paths below read the open rows)
            if (done is None and cuts is not None and len(cuts) > self.VECTOR_COST // 12
                    and self.RECUT_MAX and not (lo % (n * g) or (hi - lo) % (n * g))):
                # Cuts only accumulate (groups that became alike again stay apart): before a
                # numpy pass over the same share on every pseudo-channel, look for the groups
                # afresh (which gives up cheaply once RECUT_MAX differences show).
                self._cuts = None
                self._recut()
                cuts = self._cuts
            if done is None and cuts is not None:   # few groups of identical pseudo-channels
                if count < n:                   # worth it when a group takes many granules
                    if count >= 8 and self._groups_in(first % n, count) * 4 <= count:
                        runs = self._runs(lo, hi, first, count)
                        done = self._serve_pieces(runs, s, arrival,
                                                  min(count * 1.1, 25))
                elif len(cuts) <= self.VECTOR_COST // 12:
                    runs = runs or self._runs(lo, hi, first, count)
                    done = self._serve_pieces(runs, s, arrival, self.VECTOR_COST)
            if done is None:
                if count < n:
                    done = self._serve_line(lo, hi, first, count, s, arrival)
                else:
                    done = self._serve_shares(lo, hi, s, arrival)
                if self._cuts is not None:      # groups split where the shares differ
                    self._add_cuts([x for run in runs or self._runs(lo, hi, first, count)
                                    for x in run[:2]])
                elif count >= n:
                    self._recut()
                # Open rows may have made the timing differ inside a timing group: found
                # again from the state when needed (it often converges, e.g. when idle).
                self._tcuts = None
        self.row_hits += (hi - lo) // bb
        e = done // refi                        # sync_refreshes(done), inline
        if e > self._seen_epoch:
            self.refreshes += (e - self._seen_epoch) * n
            self._seen_epoch = e
        return done

    # -- groups of pseudo-channels in the same state ------------------------------------------
    def _add_cuts(self, points) -> None:
        """Pseudo-channels on either side of each point may differ from now on (in the whole
        state, ``_cuts``, and in the timing state, ``_tcuts``)."""
        self._cuts = self._with_points(self._cuts, points, self.GROUPS_MAX)
        # (timing groups only serve the cold path: unknown past COLD_PIECES, found again then)
        self._tcuts = self._with_points(self._tcuts, points, self.COLD_PIECES)
        self._coarser_tcuts()

    def _with_points(self, cuts: list[int] | None, points, most: int) -> list[int] | None:
        """``cuts`` (sorted group starts) with the inner ``points`` added, or None (groups
        unknown) when that makes more than ``most``."""
        if cuts is None:
            return None
        n = self._n
        for x in points:
            if 0 < x < n:
                i = bisect_left(cuts, x)
                if i == len(cuts) or cuts[i] != x:
                    cuts.insert(i, x)
        return None if len(cuts) > most else cuts

    def _coarser_tcuts(self) -> None:
        # Groups of identical whole state have identical timing state too: the fewer groups
        # of the two are the timing groups (the cold path costs one share per group).
        cuts = self._cuts
        if (cuts is not None and len(cuts) <= self.COLD_PIECES
                and (self._tcuts is None or len(cuts) < len(self._tcuts))):
            self._tcuts = list(cuts)

    def _retcut(self) -> None:
        """Find the groups of pseudo-channels in the same timing state again (``_tcuts``; the
        data bus, activation slot and refresh interval of the last use), if few."""
        differs = self.bus_free[1:] != self.bus_free[:-1]
        differs |= self.act_free[1:] != self.act_free[:-1]
        differs |= self.epoch[1:] != self.epoch[:-1]
        if np.count_nonzero(differs) < self.COLD_PIECES:
            self._tcuts = [0] + (np.flatnonzero(differs) + 1).tolist()

    def _groups_in(self, pc: int, count: int) -> int:
        """Groups met by ``count`` consecutive pseudo-channels from ``pc`` (wrapping)."""
        cuts, end = self._cuts, pc + count
        if end <= self._n:
            return bisect_left(cuts, end) - bisect_right(cuts, pc) + 1
        return len(cuts) - bisect_right(cuts, pc) + bisect_left(cuts, end - self._n) + 1

    def _recut(self) -> None:
        """Find the groups again after a pass over every pseudo-channel (states converge, e.g.
        after idle time): cheap unless the data buses already agree almost everywhere."""
        most = self.RECUT_MAX
        differs = None
        for a in (self.bus_free, self.act_free, self.epoch):   # cheapest first
            d = a[1:] != a[:-1]
            differs = d if differs is None else differs | d
            if np.count_nonzero(differs) >= most:
                return
        for a in (self.open_row, self.act_at):
            differs |= self._row_count(a[1:] != a[:-1]) > 0
            if np.count_nonzero(differs) >= most:
                return
        self._cuts = [0] + (np.flatnonzero(differs) + 1).tolist()
        self._coarser_tcuts()

    def _runs(self, lo: int, hi: int, first: int, count: int) -> list[tuple]:
        """The shares of burst range ``[lo, hi)`` as runs of consecutive pseudo-channels with
        the same share: ``(pc0, pc1, a, k, nbytes)`` (local granules ``[a, a+k)``)."""
        n, g = self._n, self._g
        f0, A = first % n, first // n
        front, back = lo - first * g, (first + count) * g - hi
        if count >= n:
            q, r = divmod(count, n)
            if not (f0 or r or front or back):          # aligned: one run
                return [(0, n, A, q, q * g)]
            bounds = {0, n, f0, (f0 + r) % n}
        else:
            q = r = 0
            end = f0 + count
            if end <= n:
                if not (front or back):
                    return [(f0, end, A, 1, g)]
                bounds = {f0, end}
            else:
                bounds = {0, end - n, f0, n}
        last_pc = (first + count - 1) % n
        if front:
            bounds.update((f0, f0 + 1))
        if back:
            bounds.update((last_pc, last_pc + 1))
        bounds = sorted(bounds)
        runs = []
        for x0, x1 in zip(bounds, bounds[1:]):
            j = (x0 - f0) % n
            if j >= count:
                continue                                # not touched (count < n)
            k = q + (j < r) if q else 1
            nbytes = k * g
            if x0 == f0:
                nbytes -= front
            if x0 == last_pc:
                nbytes -= back
            runs.append((x0, x1, A + (x0 < f0), k, nbytes))
        return runs

    def _serve_cold(self, runs: list[tuple], s: int, arrival: int) -> int | None:
        """Serve a range over every pseudo-channel when every one is cold (refreshed since its
        last use, so every bank is closed and the open rows do not matter): one share
        computed on scalars per piece of pseudo-channels in the same timing state
        (``_tcuts``) with the same share (``runs``), written over the piece; the bank writes
        are queued (``_banks_due``) until something reads the banks. The arithmetic of
        :meth:`_serve_banks` for a cold pseudo-channel. None (nothing done) when a piece is
        not cold or there are more than ``COLD_PIECES`` pieces."""
        tcuts, refi, n = self._tcuts, self._refi, self._n
        bus_free, act_free, epoch, _, _, pc_busy = self._mv
        pieces = []
        for x0, x1, a, k, nbytes in runs:
            i = bisect_right(tcuts, x0)
            while True:
                x = tcuts[i] if i < len(tcuts) and tcuts[i] < x1 else x1
                busy = bus_free[x0]
                if (busy if busy > s else s) // refi <= epoch[x0]:
                    return None                 # not refreshed since its last use
                pieces.append((x0, x, a, k, nbytes))
                if x == x1:
                    break
                x0, i = x, i + 1
        if len(pieces) > self.COLD_PIECES:
            return None
        rcd, cl, tact, xg, bw, bb = self._rcd, self._cl, self._act, self._xg, self._bw, self._bb
        rfc, avail, group = self._rfc, self._avail, self._group
        patterns, pattern = self._pattern_cache, self._patterns
        stalled = s != arrival
        done_all = misses_all = stalls_all = 0
        due, supersede, states = [], True, []
        for x0, x1, a, k, nbytes in pieces:
            rb, a_rel = divmod(a, group)
            p = patterns.get((a_rel, k)) or pattern(a_rel, k)   # kind 0: [a_rel, a_rel + k)
            _, _, pairs, row_cycle, nbanks, max_offset, last_is_r0 = p.scalars
            busy, af = bus_free[x0], act_free[x0]
            begin_epoch = (busy if busy > s else s) // refi
            # First data: every bank closed, so activate (no precharge) when allowed. Times
            # inside a refresh window wait for its end; activity is stretched by each window.
            act = af if af > s else s
            e = act // refi
            if e and act - e * refi < rfc:
                act = e * refi + rfc
            over = act % refi + rcd + cl - refi
            ready = act + rcd + cl + (-(-over // avail) * rfc if over > 0 else 0)
            slot = act + tact
            start = ready if ready > busy else busy
            e = start // refi
            if e and start - e * refi < rfc:
                start = e * refi + rfc
            work = -(-nbytes * SEC // bw)
            rest = pairs - 1
            if rest:                            # activation-rate and row-cycle bounds
                last_act = slot + (rest - 1) * tact
                if act + row_cycle > last_act:
                    last_act = act + row_cycle
                bound = last_act + rcd + cl + (xg if xg < work else work) - start
                if bound > work:
                    work = bound
                new_af = start - rcd - cl + max_offset
                new_af = (new_af if new_af > last_act else last_act) + tact
            else:
                new_af = slot
            over = start % refi + work - refi
            done = start + work + (-(-over // avail) * rfc if over > 0 else 0)
            supersede = supersede and p.touched_all[0]
            due.append((x0, x1, p, rb, start - rcd - cl, s, act if last_is_r0 else None))
            done_epoch = (done - 1) // refi
            states.append((done, done_epoch, new_af, due[-1][2:]))
            windows = done_epoch - begin_epoch
            misses = pairs
            if windows:                         # rows reopened after each refresh in the share
                misses += min(windows * nbanks, nbytes // bb - misses)
            size = x1 - x0
            if size == 1:
                bus_free[x0], epoch[x0], act_free[x0] = done, done_epoch, new_af
                pc_busy[x0] += done - start
            elif size == n:
                self.bus_free.fill(done)
                self.epoch.fill(done_epoch)
                self.act_free.fill(new_af)
                self._busy_all += done - start
            else:
                self.bus_free[x0:x1] = done
                self.epoch[x0:x1] = done_epoch
                self.act_free[x0:x1] = new_af
                self.pc_busy_ps[x0:x1] += done - start
            misses_all += misses * size
            if windows or stalled:
                stalls_all += size
            if done > done_all:
                done_all = done
        if supersede:                           # every bank of every pc written again
            self._banks_due = due
        else:
            self._banks_due += due
        self.activations += misses_all
        self.row_misses += misses_all
        self.row_hits -= misses_all
        self.refresh_stalls += stalls_all
        self.steps += len(pieces)
        if not supersede and (len(runs) > 1 or runs[0][0] or runs[0][1] != n):
            self._add_cuts([x for run in runs for x in run[:2]])    # (tcuts are in cuts)
        # Every pseudo-channel now has its piece's timing state (and, when every bank was
        # written, its whole state): the groups are where consecutive pieces differ, often
        # fewer than before (e.g. idle pieces served alike).
        tcuts, cuts = [0], [0]
        for piece, before, after in zip(pieces[1:], states, states[1:]):
            if before[:3] != after[:3]:         # (data bus, epoch, activation slot)
                tcuts.append(piece[0])
                cuts.append(piece[0])
            elif before[3] != after[3]:         # (bank writes)
                cuts.append(piece[0])
        self._tcuts = tcuts
        if supersede and self.GROUPS_MAX:
            self._cuts = cuts if len(cuts) <= self.GROUPS_MAX else None
        return done_all

    def _serve_pieces(self, runs: list[tuple], s: int, arrival: int,
                      budget: float) -> int | None:
        """Serve each run one group at a time (one share computed on scalars, copied to the
        group's other pseudo-channels), or None (nothing done) when that would be slower than
        one numpy pass."""
        cuts = self._cuts
        pieces, cost = [], 0
        for x0, x1, a, k, nbytes in runs:
            i = bisect_right(cuts, x0)
            while True:
                x = cuts[i] if i < len(cuts) and cuts[i] < x1 else x1
                pieces.append((x0, x, a, k, nbytes))
                cost += (1.2 if k == 1 else 7) + (x - x0 > 1) * 2.5   # ~us
                if cost > budget:
                    return None
                if x == x1:
                    break
                x0, i = x, i + 1
        stalled = s != arrival
        done_all = misses_all = stalls_all = 0
        mv = self._mv
        for x0, x1, a, k, nbytes in pieces:
            before = mv[5][x0]
            if k == 1:
                done, misses, stall = self._serve_granule(a * self._n + x0, 1, self._g - nbytes,
                                                          0, s, stalled)
            else:
                done, misses, stall = self._serve_banks(x0, a, k, nbytes, s, stalled)
            size = x1 - x0
            if size > 1:                        # the rest of the group: same state, same share
                sl = slice(x0 + 1, x1)
                self.bus_free[sl] = done
                self.epoch[sl] = mv[2][x0]
                self.act_free[sl] = mv[1][x0]
                self._open_row[sl] = self._open_row[x0]
                self._act_at[sl] = self._act_at[x0]
                self.pc_busy_ps[sl] += mv[5][x0] - before
            misses_all += misses * size
            stalls_all += stall * size
            if done > done_all:
                done_all = done
        self.activations += misses_all
        self.row_misses += misses_all
        self.row_hits -= misses_all
        self.refresh_stalls += stalls_all
        self.steps += len(pieces)
        self._add_cuts([x for piece in pieces for x in piece[:2]])
        return done_all

    # -- refresh windows -----------------------------------------------------------------------
    def _unblock(self, t: int) -> int:
        """``t``, or the end of the refresh window it falls in."""
        e = t // self._refi
        return e * self._refi + self._rfc if e and t - e * self._refi < self._rfc else t

    def _stretch(self, t: int, work: int) -> int:
        """End of ``work`` ps of activity from ``t`` (not in a window), refresh windows excluded:
        ``t + work`` plus ``tRFC`` for every window the activity runs into."""
        over = t % self._refi + work - self._refi
        if over <= 0:
            return t + work
        return t + work + (over + self._avail - 1) // self._avail * self._rfc

    def _row_count(self, same: np.ndarray) -> np.ndarray:
        """True entries per row of a (shares x banks) bool array, as int64."""
        w = self._words
        if w == 2:
            c = np.bitwise_count(same.view(np.uint64))
            return np.add(c[:, 0], c[:, 1], dtype=_I64)
        if w == 1:
            return np.bitwise_count(same.view(np.uint64))[:, 0].astype(_I64)
        return same.sum(axis=1, dtype=_I64)

    def _unblock_v(self, t: np.ndarray, s: int) -> np.ndarray:
        """:meth:`_unblock` of every element of ``t`` (all >= ``s``, which is not inside a
        refresh window)."""
        refi = self._refi
        hi = t.max()
        if hi < (s // refi + 1) * refi:         # all before the next window: nothing to do
            return t
        lo = t.min()                            # or all in one later quiet interval
        e = lo // refi
        if hi < (e + 1) * refi and lo - e * refi >= self._rfc:
            return t
        rem = t % refi
        win = rem < self._rfc
        if s < refi:
            win &= t >= refi
        if np.count_nonzero(win):
            return np.where(win, t - rem + self._rfc, t)
        return t

    def _stretch_v(self, t: np.ndarray, work, s: int | None = None) -> np.ndarray:
        """:meth:`_stretch` of every element of ``t`` (``work`` a scalar or an array; when
        ``s`` is given, every ``t`` >= ``s``, which is not inside a refresh window)."""
        refi = self._refi
        end = t + work
        if s is not None:
            hi = end.max()
            if hi < (s // refi + 1) * refi:     # all done before the next window
                return end
            if hi <= (t.min() // refi + 1) * refi:   # or all inside one quiet interval
                return end
        over = t % refi
        over += work - refi
        if np.count_nonzero(over > 0):
            np.maximum(over, 0, out=over)
            over += self._avail - 1
            over //= self._avail
            over *= self._rfc
            end += over
        return end

    # -- shares on scalars, one by one ------------------------------------------------------
    def _cut_granules(self, first: int, count: int, front: int, back: int) -> None:
        """Groups after granules ``first .. first+count-1`` (fewer than pseudo-channels, or one)
        were served one by one, ``front`` / ``back`` bytes off the first / last: split around
        the run (the points of :meth:`_runs`)."""
        n = self._n
        f0 = first % n
        if count == 1:                          # its own group, timing state included
            self._add_cuts((f0, f0 + 1))
            return
        end = f0 + count
        points = [f0, end] if end <= n else [end - n, f0]   # (0 and n: no cuts)
        if front:
            points.append(f0 + 1)
        if back:
            points += ((end - 1) % n, (end - 1) % n + 1)
        self._cuts = self._with_points(self._cuts, points, self.GROUPS_MAX)
        # Open rows may have made the timing differ inside a timing group: found again from
        # the state when needed.
        self._tcuts = None

    def _serve_line(self, lo: int, hi: int, first: int, count: int, s: int,
                    arrival: int) -> int:
        """Granules ``first .. first+count-1`` (fewer than pseudo-channels: one granule, one
        bank and row per share) of the burst range ``[lo, hi)`` in one numpy pass over the
        shares (the arithmetic of :meth:`_granule_server`, element-wise)."""
        n, B, g, group, refi = self._n, self._B, self._g, self._group, self._refi
        f0, A = first % n, first // n
        m, end = count, first % n + count
        pcs = self._wrap[f0:end]
        if end <= n:                            # one local granule for all: one bank, one row
            r = A // group
            flat = self._arB[f0:end] + A % B
        else:
            a = np.full(m, A, _I64)
            a[n - f0:] += 1
            r = a // group
            flat = pcs * B + a % B
        work = np.full(m, self._xfer_granule, _I64)
        bursts = None
        front, back = lo - first * g, (first + count) * g - hi
        if front or back:
            bursts = np.full(m, g // self._bb, _I64)
            bursts[0] -= front // self._bb
            bursts[-1] -= back // self._bb
            work[0] = transfer_ps(int(bursts[0]) * self._bb, self._bw)
            work[-1] = transfer_ps(int(bursts[-1]) * self._bb, self._bw)
        busy = self.bus_free[pcs]
        begin = np.maximum(busy, s)
        begin_epoch = begin // refi
        refreshed = self.epoch[pcs] < begin_epoch
        if np.count_nonzero(refreshed):         # banks precharged by a refresh since last use
            self.open_row[pcs[refreshed]] = -1
        opens, acts = self.open_row.reshape(-1), self.act_at.reshape(-1)
        opened, act0 = opens[flat], acts[flat]
        opens[flat] = r                         # open-page policy
        hit = opened == r
        hits = int(np.count_nonzero(hit))
        if hits:                                # hit: tCL once the row is ready
            t_hit = act0 + self._rcd
            np.maximum(t_hit, s, out=t_hit)
        if hits < m:                            # precharge (after tRAS) if open, activate
            t_miss = act0 + self._ras
            np.maximum(t_miss, s, out=t_miss)
            t_miss += self._rp
            closed = opened < 0
            if np.count_nonzero(closed):
                t_miss[closed] = s
            af = self.act_free[pcs]
            np.maximum(t_miss, af, out=t_miss)
        if hits == m:
            t, wait = t_hit, self._cl
        elif not hits:
            t, wait = t_miss, self._rcd + self._cl
        else:
            t = np.where(hit, t_hit, t_miss)
            wait = np.where(hit, self._cl, self._rcd + self._cl)
        t = self._unblock_v(t, s)
        if hits < m:
            if hits:
                miss = ~hit
                acts[flat[miss]] = t[miss]
                self.act_free[pcs[miss]] = t[miss] + self._act
            else:
                acts[flat] = t
                self.act_free[pcs] = t + self._act
        ready = self._stretch_v(t, wait, s)
        np.maximum(ready, busy, out=ready)
        start = self._unblock_v(ready, s)
        done = self._stretch_v(start, work, s)
        done_epoch = done - 1
        done_epoch //= refi
        windows = done_epoch - begin_epoch
        n_windows = int(np.count_nonzero(windows))
        misses = m - hits
        if n_windows:                           # rows reopened after each refresh
            if bursts is None:
                bursts = g // self._bb
            misses += int(np.minimum(windows, bursts - ~hit).sum())
        self.refresh_stalls += m if s != arrival else n_windows
        self.epoch[pcs] = done_epoch
        self.bus_free[pcs] = done
        self.pc_busy_ps[pcs] += done - start
        self.activations += misses
        self.row_misses += misses
        self.row_hits -= misses
        self.steps += 1
        return int(done.max())

    def _granule_server(self):
        """``serve(first, count, front, back, s, stalled) -> (end, activations, refresh
        stalls)``: granules ``first .. first+count-1`` (one share each: one bank, one row),
        ``front`` bytes off the first and ``back`` off the last, served one by one in order on
        their pseudo-channels, updating them; the end is the latest. A closure over the
        constants with the loop inside: the hot path of small accesses."""
        n, B, g, group, bb, bw, xg = (self._n, self._B, self._g, self._group, self._bb, self._bw,
                                      self._xg)
        refi, rfc, rcd, cl, rp, ras, tact = (self._refi, self._rfc, self._rcd, self._cl,
                                             self._rp, self._ras, self._act)
        bus_free, act_free, epoch, open_row, act_at, pc_busy = self._mv
        closed_row, stretch = self._closed_row, self._stretch

        def serve(first: int, count: int, front: int, back: int, s: int,
                  stalled: bool) -> tuple[int, int, int]:
            a, pc = divmod(first, n)
            bank, r = a % B, a // group
            last = count - 1
            done_all = misses_all = stalls = 0
            # s is not inside a refresh window: the windows matter from quiet_end on only.
            s_epoch = s // refi
            quiet_end = (s_epoch + 1) * refi
            for j in range(count):
                if pc == n:                     # wrapped: the next local granule
                    pc, a = 0, a + 1
                    bank, r = a % B, a // group
                busy = bus_free[pc]
                begin_epoch = busy // refi if busy > s else s_epoch
                row0 = pc * B
                if begin_epoch > epoch[pc]:     # refreshed since last use: banks precharged
                    open_row[row0:row0 + B] = closed_row
                i = row0 + bank
                opened, act0 = open_row[i], act_at[i]
                open_row[i] = r                 # open-page policy
                if opened == r:                 # hit: tCL once the row is ready
                    miss, wait = 0, cl
                    t = act0 + rcd
                    if t < s:
                        t = s
                else:                           # precharge (after tRAS) if open, activate
                    miss, wait = 1, rcd + cl
                    if opened >= 0:
                        t = act0 + ras
                        if t < s:
                            t = s
                        t += rp
                    else:
                        t = s
                    af = act_free[pc]
                    if af > t:
                        t = af
                if t >= quiet_end:              # not inside a refresh window
                    e = t // refi
                    if t - e * refi < rfc:
                        t = e * refi + rfc
                if miss:
                    act_at[i] = t
                    act_free[pc] = t + tact
                ready = t + wait
                if ready > quiet_end and (t < quiet_end or t % refi + wait > refi):
                    ready = stretch(t, wait)
                start = ready if ready > busy else busy
                if start >= quiet_end:
                    e = start // refi
                    if start - e * refi < rfc:
                        start = e * refi + rfc
                if j and j != last or not (front or back):
                    nbytes, work = g, xg
                else:                           # the first or last granule, trimmed
                    nbytes = g - (0 if j else front) - (back if j == last else 0)
                    work = -(-nbytes * SEC // bw)
                done = start + work
                if done > quiet_end:
                    if start < quiet_end or start % refi + work > refi:
                        done = stretch(start, work)
                    done_epoch = (done - 1) // refi
                else:
                    done_epoch = s_epoch
                epoch[pc] = done_epoch
                bus_free[pc] = done
                pc_busy[pc] += done - start
                if done_epoch != begin_epoch:   # rows reopened after the refresh
                    miss += min(done_epoch - begin_epoch, nbytes // bb - miss)
                    stalls += 1
                elif stalled:
                    stalls += 1
                misses_all += miss
                if done > done_all:
                    done_all = done
                pc += 1
            return done_all, misses_all, stalls

        return serve

    def _serve_banks(self, pc: int, a: int, k: int, nbytes: int, s: int,
                     stalled: bool) -> tuple[int, int, int]:
        """One share of ``k`` > 1 granules (local granules ``[a, a+k)``, ``nbytes`` once
        trimmed to bursts) on pseudo-channel ``pc``: updates its state; returns (end,
        activations, refresh stalls). Scalars, with the banks of the one pseudo-channel as
        small numpy rows (the arithmetic of :meth:`_serve_shares` for one share)."""
        B, refi, rcd, cl, rp, tact = self._B, self._refi, self._rcd, self._cl, self._rp, self._act
        rb, a_rel = divmod(a, self._group)
        p = self._patterns(a_rel, k)            # kind 0: local granules [a_rel, a_rel + k)
        first_rows, last_rows, offsets = p.rows0
        touched, if_new, always = p.flags0
        b0, r0, pairs, row_cycle, nbanks, max_offset, last_is_r0 = p.scalars
        r0 += rb
        bus_free, act_free, epoch, open_flat, act_flat, pc_busy = self._mv
        opens, acts = self._open_row[pc], self._act_at[pc]
        busy = bus_free[pc]
        begin = busy if busy > s else s         # when this share has the pseudo-channel
        begin_epoch = begin // refi
        i0 = pc * B + b0
        if begin_epoch > epoch[pc]:             # refreshed since last use: banks precharged
            opens[...] = -1
            misses = pairs
            same = None
            open0 = -1
        else:
            # Rows: a bank's first row is a hit when open; every other row visited is a miss.
            same = opens == (first_rows + rb if rb else first_rows)
            misses = pairs - int(np.count_nonzero(same))
            open0 = open_flat[i0]
        # First data.
        if open0 == r0:
            act = None
            t = act_flat[i0] + rcd
            ready = self._stretch(self._unblock(t if t > s else s), cl)
            slot = max(s + rp, act_free[pc])
        else:
            if open0 >= 0:
                t = act_flat[i0] + self._ras
                t = (t if t > s else s) + rp
            else:
                t = s
            af = act_free[pc]
            act = self._unblock(af if af > t else t)
            ready = self._stretch(act, rcd + cl)
            slot = act + tact
        start = self._unblock(ready if ready > busy else busy)
        work = -(-nbytes * SEC // self._bw)
        rest = misses - (act is not None)
        if rest:                                # activation-rate and row-cycle bounds
            last_act = max(slot + (rest - 1) * tact, (s if act is None else act) + row_cycle)
            work = max(work, last_act + rcd + cl + min(self._xg, work) - start)
        done = self._stretch(start, work)
        # Activation times: data-aligned estimates (a row opens tRCD + tCL before its data),
        # exact for the first access.
        if misses:
            t = offsets + (start - rcd - cl)
            np.maximum(t, s, out=t)
            if same is None:
                changed = touched
            else:
                changed = np.greater(if_new, same)
                changed |= always
            np.copyto(acts, t, where=changed)
            if act is not None and last_is_r0:
                act_flat[i0] = act
            if rest:
                act_free[pc] = max(last_act, start - rcd - cl + max_offset) + tact
            else:
                act_free[pc] = slot
        if p.touched_all[0]:                    # open-page policy: last rows stay open
            np.add(last_rows, rb, out=opens)
        else:
            np.copyto(opens, last_rows + rb, where=touched)
        done_epoch = (done - 1) // refi
        windows = done_epoch - begin_epoch
        if windows:                             # rows reopened after each refresh in the share
            misses += min(windows * nbanks, nbytes // self._bb - misses)
        epoch[pc] = done_epoch
        bus_free[pc] = done
        pc_busy[pc] += done - start
        return done, misses, 1 if windows or stalled else 0

    # -- many shares at once -----------------------------------------------------------------
    def _patterns(self, a: int, q: int) -> _Patterns:
        """Row patterns of shares ``[a + x, a + x + q + y)`` for x, y in (0, 1) (cached)."""
        key = (a, q)
        p = self._pattern_cache.get(key)
        if p is not None:
            return p
        B, g, group, xg = self._B, self._g, self._group, self._xg
        a_ = np.array([a, a, a + 1, a + 1], _I64)
        k_ = np.array([q, q + 1, q, q + 1], _I64)
        A, L, K = a_[:, None], (a_ + k_ - 1)[:, None], k_[:, None]
        bank = np.arange(B)
        touched = (K >= B) | ((bank - A) % B < K)
        first_rows = (A + (bank - A) % B) // group
        last_rows = (L - (L - bank) % B) // group
        row_start = np.maximum(A, last_rows * group)
        offsets = (row_start + (bank - row_start) % B - A) * xg
        rows = np.where(touched, last_rows - first_rows, 0)
        several = (rows > 0) & touched
        b0, r0 = a_ % B, a_ // group
        work = np.array([transfer_ps(int(k) * g, self._bw) for k in k_], _I64)
        p = _Patterns()
        p.rows = np.stack([np.where(touched, first_rows, _UNTOUCHED), last_rows, offsets])
        p.flags = np.stack([touched, touched & ~several, several])
        p.fields = np.stack([b0, r0, (rows + touched).sum(axis=1),
                             rows.max(axis=1) * (self._ras + self._rp), np.minimum(k_, B),
                             np.where(touched, offsets, -1).max(axis=1), work,
                             np.minimum(work, xg), k_ * g // self._bb]).astype(_I64)
        p.last_is_r0 = last_rows[np.arange(4), b0] == r0
        p.touched_all = touched.all(axis=1).tolist()
        p.always_all = several.all(axis=1).tolist()
        p.always_any = several.any(axis=1).tolist()
        p.aligned = None                        # decomposition of q granules on every pc
        p.rows0, p.flags0 = tuple(p.rows[:, 0]), tuple(p.flags[:, 0])
        p.scalars = p.fields[:6, 0].tolist() + [bool(p.last_is_r0[0])]   # kind 0, as ints
        if len(self._pattern_cache) >= self.PATTERN_ENTRIES:
            self._pattern_cache.clear()
        self._pattern_cache[key] = p
        return p

    def _shares(self, lo_rel: int, nbytes: int) -> _Shares:
        """Decomposition of the burst range ``[lo_rel, lo_rel + nbytes)`` (``lo_rel`` inside
        the first period), rows relative to row 0."""
        n, g, bb = self._n, self._g, self._bb
        lo, hi = lo_rel, lo_rel + nbytes
        first, last = lo // g, (hi - 1) // g
        count = last - first + 1
        f0, A = first % n, first // n
        d = _Shares()
        q, r = divmod(count, n)                 # (count >= n: a share on every pc)
        m = n
        # pcs before f0 start one granule later; shares j < r (from pc f0 on) are longer
        cuts = sorted({0, f0, (f0 + r) % n, n})
        runs = [(x0, x1, (2 if x0 < f0 else 0) + ((x0 - f0) % n < r))
                for x0, x1 in zip(cuts, cuts[1:])]
        pos0, posl = f0, last % n
        p = self._patterns(A, q)
        d.m = m
        kinds = {c for _, _, c in runs}
        touched_all = all(p.touched_all[c] for c in kinds)
        always_all = all(p.always_all[c] for c in kinds)
        always_any = any(p.always_any[c] for c in kinds)
        if len(kinds) == 1:                     # one pattern: per-bank rows broadcast
            c = kinds.pop()
            first_rows, last_rows, offsets = p.rows[:, c, None]
            touched, if_new, always = p.flags[:, c, None]
            (b0, r0, pairs, row_cycle, nbanks, max_offset, work, first_work,
             bursts) = p.fields[:, c].tolist()
            d.b0flat = self._arB[:m] + b0
            d.last_is_r0 = bool(p.last_is_r0[c])
            d.pairs_total = pairs * m
            if lo - first * g or (last + 1) * g - hi:
                work, first_work, bursts = (np.full(m, x, _I64)
                                            for x in (work, first_work, bursts))
        else:
            # The kinds of shares in pseudo-channel order are a rotation by f0 of a layout
            # that depends on r only: views into per-(A, q, r) arrays laid out twice over.
            rows, flags, fields, last_is_r0, _ = self._layout(p, A, q, r)
            sl = slice(n - f0, 2 * n - f0)
            if lo - first * g or (last + 1) * g - hi:
                # Trimmed below, and kept in the decomposition cache, which must not hold
                # on to layouts it drops: copies.
                rows, flags, fields = rows[:, sl].copy(), flags[:, sl].copy(), fields[:, sl].copy()
                last_is_r0, sl = last_is_r0[sl].copy(), slice(None)
            first_rows, last_rows, offsets = rows[:, sl]
            touched = if_new = always = None    # (not needed: every bank, same rule)
            if not touched_all or (always_any and not always_all):
                touched, if_new, always = flags[:, sl]
            (b0, r0, pairs, row_cycle, nbanks, max_offset, work, first_work,
             bursts) = fields[:, sl]
            d.b0flat = self._arB[:m] + b0
            d.last_is_r0 = last_is_r0[sl]
            fp = p.fields[2].tolist()
            d.pairs_total = sum(fp[c] * (x1 - x0) for x0, x1, c in runs)
        # The first and the last share lose the bytes outside [lo, hi).
        for pos, cut in ((pos0, lo - first * g), (posl, (last + 1) * g - hi)):
            if cut:
                nb = int(bursts[pos]) * bb - cut
                bursts[pos] = nb // bb
                work[pos] = transfer_ps(nb, self._bw)
                first_work[pos] = min(int(work[pos]), self._xg)
        d.r0, d.pairs, d.row_cycle = r0, pairs, row_cycle
        d.nbanks, d.max_offset = nbanks, max_offset
        d.first_rows, d.last_rows, d.offsets = first_rows, last_rows, offsets
        d.work, d.first_work, d.bursts = work, first_work, bursts
        d.touched = None if touched_all else touched
        d.update_all = always_all
        d.update_always = always if always_any else None
        d.update_if_new = None if not always_any and touched_all else if_new
        d.bursts_total = nbytes // bb
        return d

    def _layout(self, p: _Patterns, A: int, q: int, r: int) -> tuple:
        """Per-share rows, flags, fields and ``last_is_r0`` of the shares of ``q`` or ``q + 1``
        granules from local granule ``A`` (patterns ``p``) for a range whose first
        pseudo-channel is ``f0`` and ``r`` pseudo-channels from it take one more granule, laid
        out over ``2 n`` positions: those of the pseudo-channels are positions
        ``[n - f0, 2 n - f0)`` (kinds ``3 * r, 2 * (n - r), 1 * r, 0 * (n - r)``), and the
        decompositions of whole-granule ranges built on it, by ``f0``. Cached (least recently
        used dropped; ``LAYOUT_ENTRIES``)."""
        key = (A, q, r)
        cache = self._layout_cache
        out = cache.get(key)
        if out is not None:
            cache.move_to_end(key)
            return out
        n = self._n
        ci = np.repeat(np.array([3, 2, 1, 0], np.intp), [r, n - r, r, n - r])
        out = (p.rows.take(ci, axis=1), p.flags.take(ci, axis=1), p.fields.take(ci, axis=1),
               p.last_is_r0.take(ci), {})
        cache[key] = out
        if len(cache) > self.LAYOUT_ENTRIES:
            cache.popitem(last=False)
        return out

    def _decomposition(self, lo: int, hi: int) -> tuple[_Shares, int]:
        """The (cached) decomposition of burst range ``[lo, hi)`` and its row offset."""
        period, span = self._period, self._n * self._g
        R = lo // period                                    # rows above the cached pattern
        lo_rel, nbytes = lo - R * period, hi - lo
        if not (lo_rel % span or nbytes % span):            # whole granules on every pc
            p = self._patterns(lo_rel // span, nbytes // span)
            if p.aligned is None:
                p.aligned = self._shares(lo_rel, nbytes)
            return p.aligned, R
        g = self._g
        if not (lo_rel % g or nbytes % g):                  # whole granules, several kinds
            # of share: kept with their layout (views of it), any number of first pcs
            A, f0 = divmod(lo_rel // g, self._n)
            key = (A, *divmod(nbytes // g, self._n))
            layouts = self._layout_cache
            layout = layouts.get(key)
            d = layout[4].get(f0) if layout is not None else None
            if d is None:
                d = self._shares(lo_rel, nbytes)            # (makes the layout)
                layout = layouts.get(key)
                if layout is not None:
                    layout[4][f0] = d
            else:
                layouts.move_to_end(key)
            return d, R
        key = (lo_rel, nbytes)
        cache = self._cache
        d = cache.get(key)
        if d is None:
            d = cache[key] = self._shares(lo_rel, nbytes)
            if len(cache) > self.CACHE_ENTRIES:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return d, R

    def _after(self, t: np.ndarray, wait, s: int) -> tuple[np.ndarray, np.ndarray]:
        """(``_unblock(t)``, ``_stretch(_unblock(t), wait)``) element-wise (``t`` >= ``s``, which
        is not inside a refresh window; ``t`` a fresh array, may be reused)."""
        refi, rfc = self._refi, self._rfc
        end = t + wait
        hi = end.max()
        if hi < (s // refi + 1) * refi:         # all before the next window: no refresh
            return t, end
        lo = t.min()                            # or all inside one later quiet interval
        e = lo // refi
        if hi < (e + 1) * refi and lo - e * refi >= rfc:
            return t, end
        rem = t % refi
        win = rem < rfc
        if s < refi:
            win &= t >= refi
        if np.count_nonzero(win):               # inside a refresh window: wait for its end
            t = np.where(win, t - rem + rfc, t)
            rem[win] = rfc
            end = t + wait
        rem += wait - refi                      # past the next window's start
        if np.count_nonzero(rem > 0):
            np.maximum(rem, 0, out=rem)
            rem += self._avail - 1
            rem //= self._avail
            rem *= rfc
            end += rem
        return t, end

    def _serve_shares(self, lo: int, hi: int, s: int, arrival: int) -> int:
        """Every share of the burst range ``[lo, hi)`` in one numpy pass; returns the last
        share's end (the per-share arithmetic of the module docstring, element-wise)."""
        d, R = self._decomposition(lo, hi)
        refi, rcd, cl, rp, tact = self._refi, self._rcd, self._cl, self._rp, self._act
        m = d.m
        busy, epoch, af = self.bus_free, self.epoch, self.act_free
        opens, acts = self.open_row, self.act_at       # (updated in place)
        begin = np.maximum(busy, s)                         # when the share has its channel
        begin_epoch = begin // refi
        refreshed = epoch < begin_epoch                     # every bank precharged since
        n_refreshed = int(np.count_nonzero(refreshed))
        if n_refreshed == m:                    # all rows closed: every share starts cold
            if d.touched is not None:
                opens[...] = -1
            same = None
            misses, misses_total, hits = d.pairs, d.pairs_total, 0
            t = np.maximum(af, s)               # activate (no precharge) when allowed
        else:
            if n_refreshed:
                opens[refreshed] = -1
            # Rows: a bank's first row is a hit when open; every other row visited is a miss.
            same = opens == (d.first_rows + R if R else d.first_rows)
            misses = d.pairs - self._row_count(same)
            misses_total = d.pairs_total - int(np.count_nonzero(same))
            open0 = self._open_flat.take(d.b0flat)
            act0 = self._act_flat.take(d.b0flat)
            hit0 = open0 == (d.r0 + R)
            hits = int(np.count_nonzero(hit0))
            # First data: a hit waits tCL; a miss precharges (no earlier than tRAS after the
            # previous activation) when a row is open, then activates and waits tRCD + tCL.
            if hits:
                t_hit = act0 + rcd
                np.maximum(t_hit, s, out=t_hit)
            if hits < m:
                t = act0 + (self._ras + rp)
                np.maximum(t, s + rp, out=t)
                closed = open0 < 0
                if np.count_nonzero(closed):
                    t[closed] = s
                np.maximum(t, af, out=t)
        if hits == m:                           # t: the activation, or the read on a hit
            t, ready = self._after(t_hit, cl, s)
            slot, act_or_s = np.maximum(af, s + rp), s
            rest = misses
        elif not hits:
            act, ready = self._after(t, rcd + cl, s)
            slot, act_or_s = act + tact, act
            rest = misses - 1
        else:
            act, ready = self._after(np.where(hit0, t_hit, t),
                                     np.where(hit0, cl, rcd + cl), s)
            slot = np.where(hit0, np.maximum(af, s + rp), act + tact)
            act_or_s = np.where(hit0, s, act)
            rest = misses - 1 + hit0
        np.maximum(ready, busy, out=ready)
        # Data, bounded by the activation rate and row cycle of the other activations.
        work = d.work
        if isinstance(rest, int):               # the same for every share
            more = rest > 0
            n_more = m if more else 0
        else:
            more = rest > 0
            n_more = int(np.count_nonzero(more))
        if n_more:
            last_act = slot + (rest - 1) * tact
            np.maximum(last_act, act_or_s + d.row_cycle, out=last_act)
            start = self._unblock_v(ready, s)
            bound = last_act - start
            bound += d.first_work + (rcd + cl)
            np.maximum(bound, work, out=bound)
            work = bound if n_more == m else np.where(more, bound, work)
            done = self._stretch_v(start, work, s)
        else:
            start, done = self._after(ready, work, s)
        # Activation times (data-aligned estimates, exact for the first access), next slot.
        if misses_total:
            base = start - (rcd + cl)
            if d.update_all or (same is None and d.touched is None):
                np.add(base[:, None], d.offsets, out=acts)
                np.maximum(acts, s, out=acts)
            else:
                t = base[:, None] + d.offsets
                np.maximum(t, s, out=t)
                if same is None:
                    np.copyto(acts, t, where=d.touched)
                else:                           # (one mask per bank of every share)
                    if d.update_if_new is None:
                        changed = ~same
                    else:
                        changed = np.greater(d.update_if_new, same)
                        if d.update_always is not None:
                            changed |= d.update_always
                    np.putmask(acts, changed, t)
            if hits < m:
                moved = d.last_is_r0
                if moved is True:
                    moved = ~hit0 if hits else None
                elif moved is not False:
                    moved = moved & ~hit0 if hits else moved
                if moved is None:
                    self._act_flat[d.b0flat] = act
                elif moved is not False:
                    self._act_flat[d.b0flat[moved]] = act[moved]
            if n_more:
                t = base + d.max_offset
                np.maximum(t, last_act, out=t)
                t += tact
                slot = t if n_more == m else np.where(more, t, slot)
            new_af = slot if hits == 0 else np.where(misses > 0, slot, af)
        else:
            new_af = af
        last_rows = d.last_rows + R if R else d.last_rows   # open-page policy
        if d.touched is None:
            opens[...] = last_rows
        else:
            np.copyto(opens, last_rows, where=d.touched)
        # Refresh: stalls, and rows reopened after each window inside a share.
        end = int(done.max())
        s_epoch = s // refi
        if end <= (s_epoch + 1) * refi:         # every share inside s's quiet interval
            self.epoch.fill(s_epoch)
            n_windows = 0
        else:
            done_epoch = done - 1
            done_epoch //= refi
            windows = done_epoch - begin_epoch
            n_windows = int(np.count_nonzero(windows))
            if n_windows:
                extra = np.minimum(windows * d.nbanks, d.bursts - misses)
                misses_total += int(extra.sum())
            self.epoch[...] = done_epoch
        self.refresh_stalls += m if s != arrival else n_windows
        self.bus_free[...] = done
        self.act_free[...] = new_af
        self.pc_busy_ps += done
        self.pc_busy_ps -= start
        self.activations += misses_total
        self.row_misses += misses_total
        self.row_hits -= misses_total
        self.steps += 1
        return end
