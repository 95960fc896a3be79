"""HBM: the board's main memory, as a TLM target over a sparse backing store.

Programming model: none; HBM is plain memory at ``hbm.base`` in the system address space.
Organisation: stacks -> channels -> pseudo-channels -> banks (:class:`HbmGeometry`), with
``interleave_bytes`` granules spread round-robin over all pseudo-channels, then banks, then
rows; timing from row buffers, ``tRCD/tCL/tRP/tRAS``, refresh and per-pseudo-channel bandwidth
(:class:`HbmTiming`). The address mapping and the timing rules are documented in
:mod:`models.hbm_timing`, which holds the analytic model.

Transactions (loosely timed, one ``b_transport`` per burst of any size, 64 B to many MiB):

* the byte range is split arithmetically into one share per touched pseudo-channel, each timed
  from its open rows and busy-until; the annotated delay ends when the last byte is available
  (read) or written (write). No Python loop over granules or banks: ~2 us for 64 B, ~1 us a
  granule up to a few KiB, ~15-50 us for a burst of any length over every pseudo-channel
  (``python -m vp.bench.hbm_bench``; cost model in :mod:`models.hbm_timing`).
* out of range -> ``ADDRESS_ERROR``; a streaming width other than the length ->
  ``BURST_ERROR``; byte enables are honoured (disabled bytes read as 0 and are not written).
* extension ``timing_only`` (performance mode): all timing and counters, no data, no pages.
* debug transport moves data without timing; DMI is granted page by page.

Counters (plain ints, :meth:`Hbm.counters`): ``bytes_read``, ``bytes_written``,
``activations``, ``row_hits`` / ``row_misses`` (in bursts), ``refreshes``, ``refresh_stalls``,
``busy_ps`` / ``max_channel_busy_ps`` (per channel: :attr:`Hbm.channel_busy_ps`).

Validation (DESIGN.md §7, for ``npuvp validate``): :func:`peak_bandwidth`,
:func:`refresh_limited_peak` and :func:`row_miss_formula_ps` are formulas;
:func:`unloaded_row_miss_latency_ps`, :func:`sequential_read_throughput` and
:func:`random_read_throughput` measure a fresh model (in ``sim``, or in a temporary simulator).

Contents survive a soft reset; a power-on reset clears them.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np

from models.hbm_timing import (HbmArray, HbmGeometry, HbmTiming, burst_transfer_ps,
                               peak_bandwidth, refresh_limited_peak, row_miss_formula_ps)
from vp.kernel import (Command, DmiRegion, Module, Payload, Response, Simulator, SparseMemory,
                       TargetSocket)
from vp.spec.units import GIB, MIB, US

__all__ = ["Hbm", "HbmGeometry", "HbmTiming", "peak_bandwidth", "refresh_limited_peak",
           "row_miss_formula_ps", "unloaded_row_miss_latency_ps", "unloaded_row_hit_latency_ps",
           "sequential_read_throughput", "random_read_throughput", "timing_only_payload"]


_OK, _READ, _WRITE = Response.OK, Command.READ, Command.WRITE


def _counter(name: str, doc: str) -> property:
    return property(lambda self: getattr(self.array, name), doc=doc)



def geometry_and_timing(cfg) -> tuple[HbmGeometry, HbmTiming]:
    """The model's geometry and timing from a board file's ``hbm`` section."""
    geometry = HbmGeometry(stacks=cfg.stacks, channels_per_stack=cfg.channels_per_stack,
                           pseudo_channels=cfg.pseudo_channels, banks=cfg.banks,
                           row_bytes=cfg.row_bytes, interleave_bytes=cfg.interleave_bytes,
                           burst_bytes=cfg.burst_bytes)
    timing = HbmTiming(clock_hz=cfg.clock, tRCD=cfg.tRCD, tCL=cfg.tCL, tRP=cfg.tRP,
                       tRAS=cfg.tRAS, tREFI=cfg.tREFI, tRFC=cfg.tRFC,
                       channel_bandwidth=cfg.channel_bandwidth, tRRD=cfg.tRRD, tFAW=cfg.tFAW)
    return geometry, timing

class Hbm(Module):
    """``size`` bytes of HBM organised by ``geometry`` and timed by ``timing``.

    Attributes:
        store: the sparse backing store (bytes).
        array: the timing state and DRAM counters (:class:`~models.hbm_timing.HbmArray`).
        bytes_read, bytes_written: bytes requested by READ / WRITE transactions.
    """

    def __init__(self, parent, name: str, size: int, *, geometry: HbmGeometry | None = None,
                 timing: HbmTiming | None = None):
        super().__init__(parent, name)
        self.geometry = geometry or HbmGeometry()
        self.timing = timing or HbmTiming()
        self.store = SparseMemory(size)
        self.array = HbmArray(self.geometry, self.timing)
        self.target_socket = TargetSocket(f"{self.full_name}.in", self)
        self.bytes_read = 0
        self.bytes_written = 0

    @classmethod
    def from_config(cls, parent, name: str, cfg) -> "Hbm":
        """The HBM a board file's ``hbm`` section describes (``vp.spec.board_config.HbmConfig``)."""
        geometry, timing = geometry_and_timing(cfg)
        return cls(parent, name, cfg.size, geometry=geometry, timing=timing)

    # -- introspection -----------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.store.size

    @property
    def latency_ps(self) -> int:
        """Unloaded row-miss latency of one burst: (tRP + tRCD + tCL) * tCK + burst transfer."""
        return row_miss_formula_ps(self.timing) + burst_transfer_ps(self.geometry, self.timing)

    @property
    def bandwidth(self) -> int:
        """Peak bandwidth of all pseudo-channels (bytes/s)."""
        return peak_bandwidth(self.geometry, self.timing)

    activations = _counter("activations", "Row activations (each row miss is one).")
    row_hits = _counter("row_hits", "Bursts served from an open row.")
    row_misses = _counter("row_misses", "Bursts that needed an activation.")
    refreshes = _counter("refreshes", "All-bank refreshes of all pseudo-channels so far.")
    channel_busy_ps = _counter("channel_busy_ps", "Per channel: data-bus busy time (ps).")

    def counters(self) -> dict[str, int]:
        """Every counter as a plain int (refreshes brought up to now); ``busy_ps`` sums the
        channels' data-bus busy time (per channel: :attr:`channel_busy_ps`)."""
        self.array.sync_refreshes(self.now)
        return {"bytes_read": self.bytes_read, "bytes_written": self.bytes_written,
                **self.array.counters()}

    # -- forward interface -------------------------------------------------------------------
    def b_transport(self, trans: Payload, delay_ps: int) -> int:
        address, length = trans.address, trans.length
        if (address < 0 or length < 0 or address + length > self.store.size
                or trans.streaming_width != length):
            self._check(trans)                  # refused: sets the error response
            return delay_ps
        trans.response = _OK
        if not trans.extensions.get("timing_only"):
            self._move(trans)
        command = trans.command
        if command == _READ:
            self.bytes_read += length
        elif command == _WRITE:
            self.bytes_written += length
        else:
            return delay_ps
        now = self.sim.now
        return self.array.access(address, length, now + delay_ps) - now

    def transport_dbg(self, trans: Payload) -> int:
        if not self._check(trans):
            return 0
        self._move(trans)
        return trans.length

    def get_direct_mem_ptr(self, trans: Payload) -> DmiRegion | None:
        if trans.extensions.get("timing_only") or not self.store.check(trans.address, 1):
            return None
        index = trans.address // self.store.page_bytes
        start = index * self.store.page_bytes
        return DmiRegion(start, start + self.store.page_bytes - 1, self.store.page(index),
                         read_latency_ps=self.latency_ps, write_latency_ps=self.latency_ps)

    def _check(self, trans: Payload) -> bool:
        """False (with an error response) when ``trans`` is refused; else response OK."""
        if not self.store.check(trans.address, trans.length):
            trans.response = Response.ADDRESS_ERROR
            return False
        if trans.streaming_width != trans.length:
            trans.response = Response.BURST_ERROR
            return False
        trans.response = Response.OK
        return True

    def _move(self, trans: Payload) -> None:
        """The data of ``trans``, functional mode."""
        command = trans.command
        if command == _WRITE:
            if trans.byte_enable is None:
                self.store.write(trans.address, trans.data)
            else:
                merged = self.store.read(trans.address, trans.length)
                enabled = self._enables(trans) != 0
                merged[enabled] = trans.data[enabled]
                self.store.write(trans.address, merged)
        elif command == _READ:
            self.store.read_into(trans.address, trans.data)
            if trans.byte_enable is not None:
                trans.data[self._enables(trans) == 0] = 0

    @staticmethod
    def _enables(trans: Payload) -> np.ndarray:
        return np.resize(trans.byte_enable, trans.length)

    # -- reset -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Soft reset: rows closed, pseudo-channels idle, counters clear; contents are kept."""
        self.array.reset(self.now)
        self.bytes_read = 0
        self.bytes_written = 0

    def power_on(self) -> None:
        """Power-on reset: contents are lost too."""
        self.reset()
        self.store.clear()


# -- validation helpers (``npuvp validate``; DESIGN.md §7) --------------------------------------

def timing_only_payload(address: int, length: int, command: Command = Command.READ) -> Payload:
    """A transaction of ``length`` bytes that moves no data (performance mode): its buffer is a
    read-only zero-stride view, so no memory is allocated however long it is."""
    trans = Payload(command, address, np.broadcast_to(np.zeros(1, np.uint8), (length,)))
    trans.extensions["timing_only"] = True
    return trans


@contextmanager
def _fresh(geometry, timing, sim, size=64 * GIB):
    """A fresh HBM model in ``sim`` (or in a temporary simulator, closed afterwards)."""
    own = sim is None
    sim = Simulator("hbm-validate") if own else sim
    try:
        yield Hbm(sim, "hbm_probe", size, geometry=geometry, timing=timing)
    finally:
        if own:
            sim.close()


def _quiet_start(hbm: Hbm) -> int:
    """The first time >= now right after a refresh window (a full tREFI - tRFC is quiet)."""
    refi, rfc = hbm.timing.q("tREFI"), hbm.timing.q("tRFC")
    t = hbm.now // refi * refi + rfc
    return t if t >= hbm.now else t + refi


def _latency(geometry, timing, sim, same_row: bool) -> int:
    with _fresh(geometry, timing, sim) as hbm:
        g = hbm.geometry
        t0 = _quiet_start(hbm)
        first, second = g.encode(0, 0, 0, 0, 0), g.encode(0, 0, 0, 0, 0 if same_row else 1)
        hbm.b_transport(timing_only_payload(first, g.burst_bytes), t0 - hbm.now)
        t1 = t0 + max(hbm.timing.q("tRAS") + hbm.latency_ps, US // 10)   # idle again, row open
        delay = t1 - hbm.now
        return hbm.b_transport(timing_only_payload(second, g.burst_bytes), delay) - delay


def unloaded_row_miss_latency_ps(geometry: HbmGeometry | None = None,
                                 timing: HbmTiming | None = None,
                                 sim: Simulator | None = None) -> int:
    """Measured on a fresh model: one ``burst_bytes`` read to a bank whose open row is another
    row, the memory otherwise idle, tRAS elapsed and no refresh near. Until its last byte, so it
    includes one burst transfer: expected ``row_miss_formula_ps + burst_transfer_ps`` (ps)."""
    return _latency(geometry, timing, sim, same_row=False)


def unloaded_row_hit_latency_ps(geometry: HbmGeometry | None = None,
                                timing: HbmTiming | None = None,
                                sim: Simulator | None = None) -> int:
    """As :func:`unloaded_row_miss_latency_ps` but to the open row: ``tCL`` + one burst (ps)."""
    return _latency(geometry, timing, sim, same_row=True)


def sequential_read_throughput(geometry: HbmGeometry | None = None, timing: HbmTiming | None = None,
                               sim: Simulator | None = None, total_bytes: int = 256 * MIB,
                               burst: int = 1 * MIB) -> float:
    """Measured: ``total_bytes`` read from offset 0 as ``burst``-byte reads all issued at once
    (an initiator with enough requests in flight) on a fresh model; bytes/s to the last byte."""
    with _fresh(geometry, timing, sim) as hbm:
        t0 = _quiet_start(hbm)
        end = max(hbm.b_transport(timing_only_payload(a, min(burst, total_bytes - a)), t0 - hbm.now)
                  for a in range(0, total_bytes, burst))
        return total_bytes * 1e12 / (end - (t0 - hbm.now))


def random_read_throughput(geometry: HbmGeometry | None = None, timing: HbmTiming | None = None,
                           sim: Simulator | None = None, count: int = 4096, seed: int = 1) -> float:
    """Measured: ``count`` single-burst reads at random burst-aligned addresses over 64 GiB (so
    at random rows), all issued at once on a fresh model; bytes/s to the last byte."""
    with _fresh(geometry, timing, sim) as hbm:
        bb, rng = hbm.geometry.burst_bytes, random.Random(seed)
        t0 = _quiet_start(hbm)
        end = max(hbm.b_transport(timing_only_payload(rng.randrange(hbm.size // bb) * bb, bb),
                                  t0 - hbm.now) for _ in range(count))
        return count * bb * 1e12 / (end - (t0 - hbm.now))
