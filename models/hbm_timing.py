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

Cost: one share is O(banks) Python work; a pseudo-channel whose state and share equal the
previous one's (aligned streams) replays its result in O(1), so a 256 MiB burst costs ~0.2 ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import eq, sub

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

class HbmArray:
    """Timing state of every pseudo-channel, plain data, and the analytic service model.

    State (lists indexed by pseudo-channel): ``bus_free`` (busy-until of the data bus, ps),
    ``act_free`` (earliest next activation, ps), ``epoch`` (refresh interval of the last use),
    ``open_row`` / ``act_at`` (per bank: open row or -1, time of its last activation).
    Counters: ``activations``, ``row_hits``, ``row_misses`` (in bursts: hits + misses = bursts
    moved; every miss is one activation), ``refreshes`` (all-bank refreshes of all
    pseudo-channels up to the latest time seen), ``refresh_stalls`` (shares delayed by one),
    ``channel_busy_ps`` (per global channel: data-bus occupancy summed over its
    pseudo-channels), ``steps`` (Python work: 1 + banks visited per share computed, 1 per share
    replayed from an identical pseudo-channel).
    """

    def __init__(self, geometry: HbmGeometry, timing: HbmTiming):
        self.geometry, self.timing = geometry, timing
        g = geometry
        self._n, self._B, self._g, self._bb = (g.n_pseudo_channels, g.banks, g.interleave_bytes,
                                               g.burst_bytes)
        self._group = g.banks * g.granules_per_row   # granules of one row index over all banks
        self._bw = timing.channel_bandwidth
        self._rcd, self._cl, self._rp, self._ras = (timing.q(name) for name in
                                                    ("tRCD", "tCL", "tRP", "tRAS"))
        self._refi, self._rfc = timing.q("tREFI"), timing.q("tRFC")
        self._act = timing.t_act_ps
        self._xg = transfer_ps(g.interleave_bytes, self._bw)
        self._channel = [g.channel_of(pc) for pc in range(self._n)]
        self.reset()

    def reset(self, now: int = 0) -> None:
        """All rows closed, pseudo-channels idle, counters zero (refreshes counted from ``now``)."""
        n, B = self._n, self._B
        self.bus_free = [0] * n
        self.act_free = [0] * n
        self.epoch = [0] * n
        self.open_row = [[-1] * B for _ in range(n)]
        self.act_at = [[0] * B for _ in range(n)]
        self.activations = self.row_hits = self.row_misses = 0
        self.refreshes = self.refresh_stalls = self.steps = 0
        self.channel_busy_ps = [0] * self.geometry.n_channels
        self._seen_epoch = now // self._refi

    COUNTERS = ("activations", "row_hits", "row_misses", "refreshes", "refresh_stalls")

    def counters(self) -> dict[str, int]:
        """The DRAM counters as plain ints; channel busy time as its sum and its maximum."""
        out = {name: getattr(self, name) for name in self.COUNTERS}
        out["busy_ps"] = sum(self.channel_busy_ps)
        out["max_channel_busy_ps"] = max(self.channel_busy_ps)
        return out

    def state(self) -> dict:
        """Plain-data snapshot of the timing state (counters included)."""
        return {"bus_free": list(self.bus_free), "act_free": list(self.act_free),
                "epoch": list(self.epoch), "open_row": [list(r) for r in self.open_row],
                "act_at": [list(r) for r in self.act_at], "seen_epoch": self._seen_epoch,
                "counters": self.counters(), "channel_busy_ps": list(self.channel_busy_ps)}

    def sync_refreshes(self, t: int) -> None:
        """Count the refreshes every pseudo-channel performed up to time ``t``."""
        e = t // self._refi
        if e > self._seen_epoch:
            self.refreshes += (e - self._seen_epoch) * self._n
            self._seen_epoch = e

    def access(self, offset: int, length: int, arrival: int) -> int:
        """Serve ``length`` bytes at ``offset`` arriving at ``arrival``; returns the time the
        last byte is done (ps). O(pseudo-channels touched x banks) Python steps."""
        if length <= 0:
            return arrival
        bb, g, n = self._bb, self._g, self._n
        lo, hi = offset // bb * bb, -(-(offset + length) // bb) * bb
        first, last = lo // g, (hi - 1) // g
        count = last - first + 1
        done = arrival
        patterns = {}                             # (a, k) -> row pattern: at most 3 per access
        replay = None       # the previous share, replayed on a pseudo-channel in the same state
        shares = min(count, n)
        for j in range(shares):
            granule = first + j
            pc, a, k = granule % n, granule // n, (count - j + n - 1) // n   # k granules here
            nbytes = k * g
            if j == 0:
                nbytes -= lo - first * g
            if granule + (k - 1) * n == last:
                nbytes -= (last + 1) * g - hi
            before = (a, k, nbytes, self._pc_state(pc)) if shares > 1 else None
            if replay is not None and replay[0] == before:   # aligned streams: the usual case
                _, after, deltas, pc_done = replay
                self._set_pc_state(pc, after)
                self._add_totals(pc, deltas)
                self.steps += 1
            else:
                pattern = patterns.get((a, k)) or patterns.setdefault((a, k), self._pattern(a, k))
                totals = self._totals(pc)
                pc_done = self._serve(pc, a, k, pattern, nbytes, arrival)
                if j + 1 < shares:
                    replay = (before, self._pc_state(pc),
                              tuple(map(sub, self._totals(pc), totals)), pc_done)
            done = max(done, pc_done)
        self.sync_refreshes(done)
        return done

    def _pc_state(self, pc: int) -> tuple:
        return (self.bus_free[pc], self.act_free[pc], self.epoch[pc], self.open_row[pc][:],
                self.act_at[pc][:])

    def _set_pc_state(self, pc: int, state: tuple) -> None:
        self.bus_free[pc], self.act_free[pc], self.epoch[pc] = state[:3]
        self.open_row[pc][:], self.act_at[pc][:] = state[3], state[4]

    def _totals(self, pc: int) -> tuple:
        return (self.activations, self.row_hits, self.refresh_stalls,
                self.channel_busy_ps[self._channel[pc]])

    def _add_totals(self, pc: int, deltas: tuple) -> None:
        self.activations += deltas[0]
        self.row_misses += deltas[0]
        self.row_hits += deltas[1]
        self.refresh_stalls += deltas[2]
        self.channel_busy_ps[self._channel[pc]] += deltas[3]

    def _pattern(self, a: int, k: int) -> tuple:
        """Rows visited by local granules ``[a, a+k)`` of a pseudo-channel: touched banks and,
        per bank, first row, last row, and the data offset (ps) of its last row's first granule.
        A bank visits every row index between its first and last: a row index spans all banks."""
        B, group, last = self._B, self._group, a + k - 1
        banks = range(B) if k >= B else [(a + i) % B for i in range(k)]
        first_rows, last_rows, offsets = [], [], []
        for b in banks:
            lr = (last - (last - b) % B) // group
            row_start = max(a, lr * group)
            first_rows.append((a + (b - a) % B) // group)
            last_rows.append(lr)
            offsets.append((row_start + (b - row_start) % B - a) * self._xg)
        pairs = sum(last_rows) - sum(first_rows) + len(banks)
        max_rows = max(map(sub, last_rows, first_rows)) + 1
        return banks, first_rows, last_rows, offsets, pairs, max_rows

    # -- one pseudo-channel ------------------------------------------------------------------
    def _unblock(self, t: int) -> int:
        """``t``, or the end of the refresh window it falls in."""
        e = t // self._refi
        return e * self._refi + self._rfc if e and t - e * self._refi < self._rfc else t

    def _stretch(self, t: int, work: int) -> int:
        """End of ``work`` ps of activity from ``t`` (not in a window), refresh windows excluded."""
        refi = self._refi
        nxt = (t // refi + 1) * refi
        if t + work <= nxt:
            return t + work
        work -= nxt - t
        avail = refi - self._rfc
        full = (work - 1) // avail
        return nxt + full * refi + self._rfc + work - full * avail

    def _serve(self, pc: int, a: int, k: int, pattern: tuple, nbytes: int, arrival: int) -> int:
        """Serve local granules ``[a, a+k)`` (``nbytes`` once trimmed to bursts) of pseudo-channel
        ``pc``; returns when its last byte is done."""
        B, refi, rcd, cl, rp = self._B, self._refi, self._rcd, self._cl, self._rp
        banks, first_rows, last_rows, offsets, pairs, max_rows = pattern
        full = k >= B                           # every bank touched, lists indexed by bank
        s = self._unblock(arrival)
        busy = self.bus_free[pc]
        begin = max(s, busy)                    # when this share has the pseudo-channel
        opens, acts = self.open_row[pc], self.act_at[pc]
        if begin // refi > self.epoch[pc]:      # refreshed since last use: every bank precharged
            opens[:] = [-1] * B
        b0, r0 = a % B, a // self._group
        open0, act0_prev = opens[b0], acts[b0]
        # Rows: a bank's first row is a hit when open; every other row visited is a miss.
        old = opens[:] if full else [opens[b] for b in banks]
        misses = pairs - sum(map(eq, old, first_rows))
        if full:
            opens[:] = last_rows                # open-page policy: the last row stays open
        else:
            for b, lr in zip(banks, last_rows):
                opens[b] = lr
        self.steps += 1 + len(banks)
        # First data.
        if open0 == r0:
            act = None
            ready = self._stretch(self._unblock(max(s, act0_prev + rcd)), cl)
            slot = max(s + rp, self.act_free[pc])
        else:
            pre_done = max(s, act0_prev + self._ras) + rp if open0 >= 0 else s
            act = self._unblock(max(pre_done, self.act_free[pc]))
            ready = self._stretch(act, rcd + cl)
            slot = act + self._act
        start = self._unblock(max(ready, busy))
        work = transfer_ps(nbytes, self._bw)
        rest = misses - (act is not None)
        if rest:                                # activation-rate and row-cycle bounds
            last_act = max(slot + (rest - 1) * self._act,
                           (s if act is None else act) + (max_rows - 1) * (self._ras + rp))
            work = max(work, last_act + rcd + cl + min(self._xg, work) - start)
        done = self._stretch(start, work)
        # Activation times: data-aligned estimates (a row opens tRCD + tCL before its data),
        # exact for the first access.
        if misses:
            base = start - rcd - cl
            if full:
                acts[:] = [max(s, base + off) if o != fr or fr != lr else t
                           for t, o, fr, lr, off in zip(acts, old, first_rows, last_rows, offsets)]
            else:
                for b, o, fr, off in zip(banks, old, first_rows, offsets):
                    if o != fr:
                        acts[b] = max(s, base + off)
            if act is not None and last_rows[b0 if full else 0] == r0:
                acts[b0] = act
            if rest:
                self.act_free[pc] = max(last_act, base + max(offsets)) + self._act
            else:
                self.act_free[pc] = slot
        windows = (done - 1) // refi - begin // refi
        if windows or s != arrival:
            self.refresh_stalls += 1
        if windows:                             # rows reopened after each refresh in the share
            misses += min(windows * len(banks), nbytes // self._bb - misses)
        self.epoch[pc] = (done - 1) // refi
        self.bus_free[pc] = done
        self.activations += misses
        self.row_misses += misses
        self.row_hits += nbytes // self._bb - misses
        self.channel_busy_ps[self._channel[pc]] += done - start
        return done
