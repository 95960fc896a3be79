"""What a core shares with the rest of the board: the cluster (CP, error unit, interrupts, the
other cores), barriers, the receive posts that pair SEND with RECV, the synchronisation
instructions (SEND, RECV, SEM_SIGNAL, SEM_WAIT, BARRIER) and the core's SRAM as a TLM target.

Everything here is plain data plus two events, so a board's synchronisation state can be
snapshotted: ``Cluster.barriers`` maps a core mask to ``[arrived bits, generation]`` and each
core's ``recv_posts`` maps ``(source core, tag)`` to a :class:`RecvPost`.

Barrier protocol: a core executing ``BARRIER mask`` sets its bit in ``arrived``; the core that
completes the mask clears ``arrived``, bumps ``generation`` and wakes the others, which wait
for the generation to move. A core that faults or is reset while waiting takes its bit back.

Message protocol (rendezvous): ``RECV src, tag`` posts its buffer in the receiving core's
``recv_posts`` and waits for the post's ``status``. ``SEND dst, tag`` waits until the matching
post exists, takes it, writes the bytes to the receiver's SRAM aperture through the NoC and,
once they have landed, sets ``status`` to ``OK`` (or an error code both sides fault with).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from models.cp import N_SEMAPHORES, QueueFault
from models.irq import IRQ_BIT
from vp.kernel import Command, DmiRegion, Event, Payload, Response
from vp.spec import memory_map
from vp.spec.regmap import ErrCode

_READ, _WRITE, _OK = Command.READ, Command.WRITE, Response.OK
_LANDED, _MALFORMED = ErrCode.OK, ErrCode.MALFORMED_PACKET   # a RecvPost's status


class CoreFault(Exception):
    """Stops the running program with ``code`` (a guest error, never a model bug)."""

    def __init__(self, code: ErrCode):
        super().__init__(code.name)
        self.code = code

#: System address of byte 0 of core i's SRAM: ``SRAM_BASE + i · SRAM_STRIDE`` (npu.md §3).
SRAM_BASE = memory_map.SRAM_BASE
SRAM_STRIDE = memory_map.SRAM_STRIDE


class RecvPost:
    """A posted RECV: its SRAM buffer and, once the SEND is done, its status.

    ``status`` is None while pending, ``ErrCode.OK`` once the bytes have landed, or the error
    both cores fault with (e.g. ``MALFORMED_PACKET`` when the byte counts differ)."""

    __slots__ = ("sram", "nbytes", "status")

    def __init__(self, sram: int, nbytes: int):
        self.sram, self.nbytes, self.status = sram, nbytes, None

    def __repr__(self) -> str:
        return f"RecvPost(sram=0x{self.sram:x}, bytes={self.nbytes}, status={self.status!r})"


class Cluster:
    """The shared context of a board's cores (the board builds one and passes it to each).

    Attributes:
        cp: the command processor (semaphores, ``wait_until`` watchdog, ``note_progress``).
        errors: the error unit; irq: the interrupt controller.
        hbm_base, hbm_size: the HBM range (bytes) LOAD/STORE/EMBED and program fetch may use.
        cores: every core, index = core id (filled by :meth:`add`).
        barriers: core mask -> ``[arrived bits, generation]`` (plain data).
        barrier_changed: notified whenever a barrier releases.
        sram_address: core id -> system address of its SRAM (the memory map's ``sram_base``).
    """

    def __init__(self, *, cp, errors, irq, hbm_base: int, hbm_size: int,
                 sram_address: Callable[[int], int] = memory_map.sram_base):
        self.cp, self.errors, self.irq = cp, errors, irq
        self.hbm_base, self.hbm_size = hbm_base, hbm_size
        self.hbm_end = hbm_base + hbm_size
        self.sram_address = sram_address
        self.cores: list = []
        self.barriers: dict[int, list[int]] = {}
        self.barrier_changed = Event("cores.barrier_changed")

    # -- wiring ----------------------------------------------------------------------------
    def add(self, core) -> None:
        """Register ``core``; core ids must be added in order 0, 1, 2, ..."""
        if core.core_id != len(self.cores):
            raise ValueError(f"core {core.full_name} has id {core.core_id}, expected "
                             f"{len(self.cores)} (add cores in id order)")
        self.cores.append(core)

    def core(self, core_id: int):
        """The core with id ``core_id``, or None when the board has no such core."""
        return self.cores[core_id] if 0 <= core_id < len(self.cores) else None

    def valid_mask(self, mask: int) -> bool:
        """True when ``mask`` names only cores of this board and at least one."""
        return mask != 0 and not mask >> len(self.cores)

    def hbm_range(self, address: int, nbytes: int) -> bool:
        """True when ``[address, address + nbytes)`` lies in HBM."""
        return self.hbm_base <= address and address + nbytes <= self.hbm_end

    # -- interrupts --------------------------------------------------------------------------
    def update_error_irq(self) -> None:
        """Drive the CORE_ERROR level: high while any core holds an error."""
        self.irq.set_level(IRQ_BIT["CORE_ERROR"], any(c.error for c in self.cores))

    # -- barriers ------------------------------------------------------------------------------
    def barrier_arrive(self, core_id: int, mask: int) -> int | None:
        """Core ``core_id`` reaches ``BARRIER mask``. Returns None when it completes the barrier
        (everyone is released), else the generation to wait past."""
        state = self.barriers.get(mask)
        if state is None:
            state = self.barriers[mask] = [0, 0]
        state[0] |= 1 << core_id
        if state[0] == mask:
            state[0] = 0
            state[1] += 1
            self.barrier_changed.notify()
            return None
        return state[1]

    def barrier_passed(self, mask: int, generation: int) -> bool:
        """True once barrier ``mask`` has released past ``generation``."""
        return self.barriers[mask][1] != generation

    def barrier_leave(self, core_id: int) -> None:
        """Take core ``core_id`` back out of every barrier it waits at (fault, reset)."""
        bit = 1 << core_id
        for state in self.barriers.values():
            state[0] &= ~bit

    def reset(self) -> None:
        """Forget every barrier (the cores reset themselves)."""
        self.barriers.clear()


class SyncInstructions:
    """SEND, RECV, SEM_SIGNAL, SEM_WAIT and BARRIER, mixed into :class:`models.core.Core`
    (which provides ``cluster``, ``counters``, ``generation``, ``sram``, ``_kick``, ``_check``
    and ``_transact``). Each wait is the CP's ``wait_until``, so the watchdog covers it."""

    def _wait(self, ready, events: tuple, gen: int):
        """Wait until ``ready()`` (watchdog: DEADLOCK); False if the run was abandoned."""
        t0 = self.now
        try:
            ok = yield from self.cluster.cp.wait_until(
                ready, events + (self._kick,), lambda: self.generation != gen)
        except QueueFault as fault:
            raise CoreFault(fault.code) from None
        finally:
            if self.generation == gen:
                self.counters["stall_ps"] += self.now - t0
        return ok

    def _send(self, d):
        dst_id, sram, nbytes, tag = d[1:5]
        cluster, gen = self.cluster, self.generation
        dst = cluster.core(dst_id)
        if dst is None:
            raise CoreFault(ErrCode.BAD_CORE)
        self._check(sram, nbytes, 1)
        key, posts = (self.core_id, tag), dst.recv_posts
        if key not in posts and not (yield from self._wait(lambda: key in posts,
                                                             (dst.mailbox,), gen)):
            return 0
        post = posts.pop(key)
        if post.nbytes != nbytes:
            post.status = _MALFORMED
            dst.mailbox.notify()
            raise CoreFault(_MALFORMED)
        t = 0
        if nbytes:
            try:
                t = self._transact(_WRITE, cluster.sram_address(dst_id) + post.sram, sram, nbytes)
            except CoreFault:
                post.status = ErrCode.DESC_RANGE
                dst.mailbox.notify()
                raise
        ps = max(t, self.sram.access_ps(nbytes))    # at least the SRAM read's cycles
        yield self.sim.delay(ps)
        post.status = _LANDED                     # landed: the RECV completes now
        dst.mailbox.notify()
        if self.generation == gen:
            c = self.counters
            c["load_store_ps"] += ps
            c["busy_ps"] += ps
            c["noc_sent_bytes"] += nbytes
            c["sram_read_bytes"] += nbytes
        return 0

    def _recv(self, d):
        src_id, sram, nbytes, tag = d[1:5]
        if self.cluster.core(src_id) is None:
            raise CoreFault(ErrCode.BAD_CORE)
        self._check(sram, nbytes, 1)
        post = self.recv_posts[(src_id, tag)] = RecvPost(sram, nbytes)
        self.mailbox.notify()
        if not (yield from self._wait(lambda: post.status is not None, (self.mailbox,),
                                      self.generation)):
            return 0
        if post.status != _LANDED:
            raise CoreFault(post.status)
        return 0

    def _sem_index(self, sem: int) -> int:
        if not 0 <= sem < N_SEMAPHORES:
            raise CoreFault(ErrCode.MALFORMED_PACKET)
        return sem

    def _sem_signal(self, d) -> int:
        self.cluster.cp.sem_signal(self._sem_index(d[1]), d[2])
        return 0

    def _sem_wait(self, d):
        sem, value, gen = self._sem_index(d[1]), d[2], self.generation
        t0 = self.now
        try:
            yield from self.cluster.cp.sem_wait(sem, value, (self._kick,),
                                                lambda: self.generation != gen)
        except QueueFault as fault:
            raise CoreFault(fault.code) from None
        finally:
            if self.generation == gen:
                self.counters["stall_ps"] += self.now - t0
        return 0

    def _barrier(self, d):
        mask, cluster, gen = d[1], self.cluster, self.generation
        if not cluster.valid_mask(mask) or not mask >> self.core_id & 1:
            raise CoreFault(ErrCode.BAD_CORE)
        generation = cluster.barrier_arrive(self.core_id, mask)
        if generation is not None:
            yield from self._wait(lambda: cluster.barrier_passed(mask, generation),
                                  (cluster.barrier_changed,), gen)
        return 0



class Sram:
    """A core's SRAM: ``size`` bytes, a dense ``numpy.uint8`` array allocated on first use in
    functional mode and never in performance mode (``timing_only``).

    As a TLM target (offsets ``0 .. size-1``, reached through the core's SRAM aperture) an
    access costs ``access_ps(bytes)`` and counts in the core's ``sram_read_bytes`` /
    ``sram_write_bytes``; ``timing_only`` transactions are timed but move nothing; DMI is
    granted over the whole array in functional mode. Contention with the core's own units is
    not modelled.
    """

    def __init__(self, size: int, access_ps: Callable[[int], int], counters: dict,
                 timing_only: bool):
        self.size, self.access_ps, self.counters = size, access_ps, counters
        self.timing_only = timing_only
        self.array: np.ndarray | None = None
        self._views: dict = {}                  # (offset, count, dtype) -> view, of _viewed
        self._viewed: np.ndarray | None = None

    @property
    def allocated(self) -> bool:
        """True once the array exists (never in performance mode)."""
        return self.array is not None

    def mem(self) -> np.ndarray:
        """The SRAM bytes, allocated (zeroed) on first use."""
        if self.array is None:
            self.array = np.zeros(self.size, np.uint8)
        return self.array

    def view(self, offset: int, count: int, dtype) -> np.ndarray:
        """``count`` elements of ``dtype`` at byte ``offset`` (a view: writes land in SRAM)."""
        array = self.array
        if array is not None and array is self._viewed:
            v = self._views.get((offset, count, dtype))
            if v is not None:                   # the same view again: cached (plain data)
                return v
        elif array is None:
            array = self.mem()
        if array is not self._viewed or len(self._views) >= 4096:
            self._views.clear()
            self._viewed = array
        dt = np.dtype(dtype)
        v = self._views[(offset, count, dtype)] = \
            array[offset:offset + count * dt.itemsize].view(dt)
        return v

    def _access(self, trans: Payload, count: bool) -> bool:
        address, n = trans.address, trans.length
        if address < 0 or address + n > self.size:
            trans.response = Response.ADDRESS_ERROR
            return False
        if trans.streaming_width != n or trans.byte_enable is not None:
            trans.response = Response.BURST_ERROR
            return False
        timing_only = trans.extensions.get("timing_only")
        data_moves = not (self.timing_only or timing_only)
        if trans.command == _WRITE:
            if data_moves:
                self.mem()[address:address + n] = trans.data
            if count:
                self.counters["sram_write_bytes"] += n
        elif trans.command == _READ:
            if data_moves:
                trans.data[:] = self.mem()[address:address + n]
            elif not timing_only and len(trans.data) == n:
                trans.data[:] = 0               # performance mode: the SRAM holds no data
            if count:
                self.counters["sram_read_bytes"] += n
        trans.response = _OK
        return True

    def b_transport(self, trans: Payload, delay_ps: int) -> int:
        if not self._access(trans, True):
            return delay_ps
        return delay_ps + self.access_ps(trans.length)

    def transport_dbg(self, trans: Payload) -> int:
        return trans.length if self._access(trans, False) else 0

    def get_direct_mem_ptr(self, trans: Payload) -> DmiRegion | None:
        if self.timing_only or not 0 <= trans.address < self.size:
            return None
        return DmiRegion(0, self.size - 1, self.mem())
