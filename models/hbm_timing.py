"""HBM timing at transaction level: geometry, timing parameters, address mapping, and the
analytic service model of the pseudo-channels (pure Python, no kernel; used by ``models/hbm.py``).

The geometry, the timing parameters and the address mapping (offset -> stack, channel,
pseudo-channel, bank, row, column) are in :mod:`models.hbm_params` (re-exported here).

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

Where the code lives (``HbmArray`` here: its state, :meth:`HbmArray.access` choosing the path,
counters and snapshots; the rest are mixins of it, on the same attributes):

* :mod:`models.hbm_params`: ``HbmGeometry``, ``HbmTiming`` and the validation formulas;
* :mod:`models.hbm_scalar`: shares one by one on scalars (granule server, one share's banks);
* :mod:`models.hbm_vector`: the numpy passes (``_serve_line``, ``_serve_shares``);
* :mod:`models.hbm_ranges`: range decompositions, row patterns and share layouts (cached);
* :mod:`models.hbm_groups`: groups of pseudo-channels in the same state (``_cuts``,
  ``_tcuts``) and the runs of a range;
* :mod:`models.hbm_pieces`: serving one group at a time (``_serve_pieces``, ``_serve_cold``).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from models.hbm_groups import _Groups
from models.hbm_params import (HbmGeometry, HbmTiming, burst_transfer_ps,
                               peak_bandwidth, refresh_limited_peak, row_miss_formula_ps)
from models.hbm_pieces import _Pieces
from models.hbm_ranges import _CACHES, _I64, _RangeCache
from models.hbm_scalar import _Scalar
from models.hbm_vector import _Vector
from vp.spec.units import transfer_ps

__all__ = ["HbmArray", "HbmGeometry", "HbmTiming", "burst_transfer_ps", "peak_bandwidth",
           "refresh_limited_peak", "row_miss_formula_ps"]


class HbmArray(_Groups, _Pieces, _Scalar, _Vector, _RangeCache):
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
