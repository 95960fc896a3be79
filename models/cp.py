"""Command processor: eight queues of command packets in HBM rings (block ``cp``).

Programming model (data sheet: docs/regmap.md, packet formats: docs/isa.md):

1. write ``cp.RING_BASE_LO/HI[n]`` (4-byte aligned HBM address) and ``cp.RING_SIZE[n]`` (a power
   of two, at least 64 bytes), then ``cp.Q_CTRL[n].ENABLE = 1``;
2. write packets into the ring from the tail and ring the queue by writing the new tail offset
   to ``db.DOORBELL[n]``;
3. the queue executes packets in order from ``HEAD`` to the tail, wrapping at the ring size, and
   moves ``HEAD`` past each completed packet. ``FENCE`` packets publish progress in
   ``cp.FENCE[n]`` and, with their interrupt flag, raise ``CP_FENCE``.

A packet the queue cannot execute (unknown opcode, malformed length, bad core, address out of
range, a wait that the watchdog finds deadlocked) stops that queue: ``Q_STATUS.ERROR`` and
``CODE``, ``ERR_OFFSET`` = the packet's ring offset, an error record with source ``CP``
(syndrome = queue) and the ``CP_ERROR`` interrupt. Other queues keep running. ``Q_CTRL.RESET``
clears the queue. Semaphores ``cp.SEM[0..15]`` are shared by queues, cores and the host.

Timing: each packet costs a fetch through the CP's memory port (the interconnect and HBM
annotate it) plus ``packet_ps`` of decode and dispatch; waits last as long as what they wait
for. Watchdog: a queue blocked for ``watchdog_ps`` while nothing else on the board made
progress (no packet or instruction completed) is deadlocked; detection comes between one and
two watchdog periods after the last progress (the waiters share one periodic tick).
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from models.error_unit import ErrorUnit
from models.irq import IRQ_BIT, InterruptController
from models.regblock import RegisterBlock
from vp.kernel import NS, Event, InitiatorSocket, Module, Payload
from vp.spec import isa
from vp.spec.regmap import REGMAP, ErrCode, ErrSource

N_QUEUES = 8
N_SEMAPHORES = 16
_BLOCK = REGMAP.block("cp")
_STATUS = _BLOCK.reg("Q_STATUS[0]")
_CTRL = _BLOCK.reg("Q_CTRL[0]")
_MIN_RING = 64
#: Bytes the CP fetches at once: covers every packet of the table, so one read per packet.
FETCH_BYTES = 64


class CoreHandle(Protocol):
    """What the command processor needs of a core."""

    busy: bool
    idle: Event

    def launch(self, program: int, arg: int) -> None: ...


class DmaPort(Protocol):
    """What the command processor needs of the descriptor DMA engines."""

    def copy(self, src: int, dst: int, row_bytes: int, rows: int, src_stride: int,
             dst_stride: int): ...   # generator returning 0 or an ErrCode


class QueueFault(Exception):
    """Raised inside a queue's process to stop it with ``code``."""

    def __init__(self, code: ErrCode, detail: str = ""):
        super().__init__(detail)
        self.code = code


class _Queue:
    """Architectural state of one queue, plain data (and its wake-up event)."""

    __slots__ = ("index", "head", "generation", "kick", "packets")

    def __init__(self, index: int, kick: Event):
        self.index = index
        self.head = 0
        self.generation = 0       # bumped by a reset: a packet in flight is abandoned
        self.kick = kick
        self.packets = 0


class CommandProcessor(Module):
    """Executes the packets of the command queues. Times in ps, addresses in bytes."""

    def __init__(self, parent, name: str, *, irq: InterruptController, errors: ErrorUnit,
                 doorbells: RegisterBlock, mem_base: int, mem_size: int, packet_ps: int,
                 watchdog_ps: int):
        super().__init__(parent, name)
        self.irq, self.errors, self.doorbells = irq, errors, doorbells
        self.mem_base, self.mem_size = mem_base, mem_size
        self.packet_ps, self.watchdog_ps = packet_ps, watchdog_ps
        self.regs = RegisterBlock(_BLOCK)
        self.socket = InitiatorSocket(f"{self.full_name}.mem")
        self.cores: list[CoreHandle] = []
        self.dma: DmaPort | None = None
        self.sem_changed = self.event("sem_changed")
        self.watchdog_tick = self.event("watchdog_tick")
        self._watching = 0            # processes in wait_until (they share watchdog_tick)
        self.progress = 0          # packets + instructions completed anywhere (for the watchdog)
        self.ring_read_bytes = 0
        self.timestamp_bytes = 0
        self.queues = [_Queue(q, self.event(f"kick{q}")) for q in range(N_QUEUES)]
        for q in range(N_QUEUES):
            doorbells.on_write(f"DOORBELL[{q}]", lambda new, _old, q=q: self._on_doorbell(q))
            self.regs.on_write(f"Q_CTRL[{q}]", lambda new, old, q=q: self._on_ctrl(q, new, old))
            self.spawn(self._run_queue(self.queues[q]), f"queue{q}")
        for i in range(N_SEMAPHORES):
            self.regs.on_write(f"SEM[{i}]", lambda _new, _old: self.sem_changed.notify())
        self._ops: dict[str, Callable] = {
            "NOP": self._op_nop, "LAUNCH": self._op_launch, "WAIT_CORES": self._op_wait_cores,
            "DMA": self._op_dma, "SEM_SIGNAL": self._op_sem_signal, "SEM_WAIT": self._op_sem_wait,
            "FENCE": self._op_fence, "TIMESTAMP": self._op_timestamp, "IRQ": self._op_irq}

    # -- wiring ------------------------------------------------------------------------------
    def attach(self, cores: list[CoreHandle], dma: DmaPort | None) -> None:
        """Give the CP the cores it launches (index = core id) and the DMA engines."""
        self.cores, self.dma = list(cores), dma
        self.regs.hw_write("CORES", len(self.cores))

    def note_progress(self) -> None:
        """Called by anything that completes work (a core instruction): feeds the watchdog."""
        self.progress += 1

    def update_busy_cores(self) -> None:
        """Refresh CORES_BUSY_LO/HI from the cores' busy flags."""
        bits = sum(1 << i for i, c in enumerate(self.cores) if c.busy)
        self.regs.hw_write("CORES_BUSY_LO", bits & 0xFFFF_FFFF)
        self.regs.hw_write("CORES_BUSY_HI", (bits >> 32) & 0xFFFF_FFFF)

    # -- register side effects -----------------------------------------------------------------
    def _ring(self, q: int) -> tuple[int, int]:
        r = self.regs
        return r.hw_read(f"RING_BASE_LO[{q}]") | r.hw_read(f"RING_BASE_HI[{q}]") << 32, \
            r.hw_read(f"RING_SIZE[{q}]")

    def _tail(self, q: int) -> int:
        return self.doorbells.hw_read(f"DOORBELL[{q}]")

    def _on_ctrl(self, q: int, new: int, old: int) -> None:
        if _CTRL.field("RESET").extract(new):
            self.reset_queue(q)
        enable = _CTRL.field("ENABLE").extract(new)
        if enable and not _CTRL.field("ENABLE").extract(old):
            base, size = self._ring(q)
            problem = self._ring_problem(base, size)
            if problem is not None:
                self.regs.hw_write(f"Q_CTRL[{q}]", 0, "ENABLE")
                return self._fault(q, problem, 0)
        self.regs.hw_write(f"Q_STATUS[{q}]", enable, "ENABLED")
        self.queues[q].kick.notify()

    def _ring_problem(self, base: int, size: int) -> ErrCode | None:
        if size < _MIN_RING or size & (size - 1) or base % 4:
            return ErrCode.MISALIGNED
        if not (self.mem_base <= base and base + size <= self.mem_base + self.mem_size):
            return ErrCode.DESC_RANGE
        return None

    def _on_doorbell(self, q: int) -> None:
        status = self.regs.hw_read(f"Q_STATUS[{q}]")
        if not _STATUS.field("ENABLED").extract(status):
            self.errors.report(ErrCode.QUEUE_DISABLED, ErrSource.CP, self._ring(q)[0], q)
            return
        if self._tail(q) % 4 or self._tail(q) >= self._ring(q)[1]:
            return self._fault(q, ErrCode.MISALIGNED, self._tail(q))
        self.queues[q].kick.notify()

    def reset_queue(self, q: int) -> None:
        """Queue ``q`` back to empty: HEAD = tail = 0, fault cleared, packet in flight abandoned."""
        queue = self.queues[q]
        queue.generation += 1
        queue.head = 0
        self.regs.hw_write(f"HEAD[{q}]", 0)
        self.doorbells.hw_write(f"DOORBELL[{q}]", 0)
        enabled = _STATUS.field("ENABLED").extract(self.regs.hw_read(f"Q_STATUS[{q}]"))
        self.regs.hw_write(f"Q_STATUS[{q}]", _STATUS.field("ENABLED").insert(0, enabled))
        self.regs.hw_write(f"ERR_OFFSET[{q}]", 0)
        self._drive_error_irq()
        queue.kick.notify()

    # -- the queue engine ----------------------------------------------------------------------
    def _runnable(self, queue: _Queue) -> bool:
        status = self.regs.hw_read(f"Q_STATUS[{queue.index}]")
        return bool(_STATUS.field("ENABLED").extract(status)) and \
            not _STATUS.field("ERROR").extract(status) and queue.head != self._tail(queue.index)

    def _run_queue(self, queue: _Queue):
        q = queue.index
        while True:
            if not self._runnable(queue):
                self.regs.hw_write(f"Q_STATUS[{q}]", 0, "BUSY")
                yield queue.kick
                continue
            self.regs.hw_write(f"Q_STATUS[{q}]", 1, "BUSY")
            generation, offset = queue.generation, queue.head
            try:
                packet = yield from self._fetch(queue)
                yield self.sim.delay(self.packet_ps)
                work = self._ops[packet.op](queue, packet)
                if work is not None:             # packets that wait return a generator
                    yield from work
            except QueueFault as fault:
                if generation == queue.generation:
                    self._fault(q, fault.code, offset)
                continue
            if generation != queue.generation:     # reset while the packet ran
                continue
            queue.head = (offset + packet.nbytes) % self._ring(q)[1]
            queue.packets += 1
            self.progress += 1
            self.regs.hw_write(f"HEAD[{q}]", queue.head)

    def _fetch(self, queue: _Queue):
        """Read and decode the packet at HEAD; raises QueueFault when it is not valid."""
        base, size = self._ring(queue.index)
        head, tail = queue.head, self._tail(queue.index)
        available = (tail - head) % size
        raw = yield from self._read_ring(base, size, head, min(FETCH_BYTES, available))
        words = (int(raw[:4].view("<u4")[0]) >> 8) & 0xFF
        if words == 0 or 4 * words > available:
            raise QueueFault(ErrCode.MALFORMED_PACKET,
                             f"length {words} words, {available} bytes available")
        if 4 * words > len(raw):                 # longer than one fetch: read the rest
            rest = yield from self._read_ring(base, size, (head + len(raw)) % size,
                                              4 * words - len(raw))
            raw = np.concatenate([raw, rest])
        raw = raw[:4 * words]
        try:
            return isa.decode(isa.PACKETS, raw)
        except isa.DecodeError as exc:
            raise QueueFault(ErrCode[exc.cause], str(exc)) from None

    def _read_ring(self, base: int, size: int, offset: int, nbytes: int):
        self.ring_read_bytes += nbytes
        first = min(nbytes, size - offset)     # a packet may wrap around the ring's end
        parts = [(base + offset, first)] + ([(base, nbytes - first)] if first < nbytes else [])
        out = []
        for address, n in parts:
            out.append((yield from self.read_mem(address, n)))
        return out[0] if len(out) == 1 else np.concatenate(out)

    def read_mem(self, address: int, nbytes: int):
        """Read ``nbytes`` at a system address through the CP's port, taking its time."""
        trans = Payload.read(address, nbytes)
        delay = self.socket.b_transport(trans, 0)
        if not trans.is_ok:
            raise QueueFault(ErrCode.DESC_RANGE, f"read of {nbytes} bytes at 0x{address:x}")
        yield self.sim.delay(delay)
        return trans.data

    def _fault(self, q: int, code: ErrCode, offset: int) -> None:
        self.regs.hw_write(f"Q_STATUS[{q}]", 1, "ERROR")
        self.regs.hw_write(f"Q_STATUS[{q}]", int(code), "CODE")
        self.regs.hw_write(f"Q_STATUS[{q}]", 0, "BUSY")
        self.regs.hw_write(f"ERR_OFFSET[{q}]", offset)
        self.errors.report(code, ErrSource.CP, self._ring(q)[0] + offset, q)
        self._drive_error_irq()

    def _drive_error_irq(self) -> None:
        failed = any(_STATUS.field("ERROR").extract(self.regs.hw_read(f"Q_STATUS[{q}]"))
                     for q in range(N_QUEUES))
        self.irq.set_level(IRQ_BIT["CP_ERROR"], failed)

    def wait_until(self, ready: Callable[[], bool], events: tuple, abandoned: Callable[[], bool]):
        """Wait until ``ready()``, waking on ``events``; returns False if ``abandoned()``
        becomes true, and raises QueueFault(DEADLOCK) when the watchdog expires with no
        progress anywhere."""
        if ready():
            return True
        tick = self.watchdog_tick
        clause = (*events, tick)
        since, mark = self.now, self.progress
        while True:
            if abandoned():
                return False
            # One shared watchdog tick for every waiter (an event holds one pending timed
            # notification), not a delay per wait: the scheduler's queue stays short.
            if tick.pending_at is None:
                tick.notify(self.watchdog_ps)
            self._watching += 1
            try:
                yield clause
            finally:
                self._watching -= 1
                if not self._watching:       # nobody waits: an idle board has no tick pending
                    tick.cancel()
            if ready():
                return True
            if self.progress != mark:
                since, mark = self.now, self.progress
            elif self.now - since >= self.watchdog_ps:
                raise QueueFault(ErrCode.DEADLOCK, "watchdog expired")

    # -- packets -------------------------------------------------------------------------------
    def _cores_in(self, mask: int) -> list[CoreHandle]:
        if mask >> len(self.cores):
            raise QueueFault(ErrCode.BAD_CORE, f"core mask 0x{mask:x}, {len(self.cores)} cores")
        return [c for i, c in enumerate(self.cores) if mask >> i & 1]

    def _abandoned(self, queue: _Queue) -> Callable[[], bool]:
        generation = queue.generation
        return lambda: queue.generation != generation

    def _op_nop(self, queue, pkt):
        return None

    def _op_launch(self, queue, pkt):
        for core in self._cores_in(pkt.fields["core_mask"]):
            if not (yield from self.wait_until(lambda c=core: not c.busy, (core.idle, queue.kick),
                                               self._abandoned(queue))):
                return
            core.launch(pkt.fields["program"], pkt.fields["arg"])
        self.update_busy_cores()

    def _op_wait_cores(self, queue, pkt):
        cores = self._cores_in(pkt.fields["core_mask"])
        events = tuple(c.idle for c in cores) + (queue.kick,)
        yield from self.wait_until(lambda: not any(c.busy for c in cores), events,
                                   self._abandoned(queue))

    def _op_dma(self, queue, pkt):
        if self.dma is None:
            raise QueueFault(ErrCode.BAD_OPCODE, "no DMA engines on this board")
        f = pkt.fields
        code = yield from self.dma.copy(f["src"], f["dst"], f["row_bytes"], f["rows"],
                                        f["src_stride"], f["dst_stride"])
        if code:
            raise QueueFault(ErrCode(code))

    def semaphore(self, sem: int) -> int:
        return self.regs.hw_read(f"SEM[{sem}]")

    def sem_signal(self, sem: int, value: int) -> None:
        """Add ``value`` to semaphore ``sem`` (caller checked the index)."""
        self.regs.hw_write(f"SEM[{sem}]", (self.semaphore(sem) + value) & 0xFFFF_FFFF)
        self.sem_changed.notify()

    def sem_wait(self, sem: int, value: int, wake: tuple, abandoned: Callable[[], bool]):
        """Wait until semaphore ``sem`` ≥ ``value``, then take ``value`` (generator; False if
        abandoned, QueueFault(DEADLOCK) from the watchdog)."""
        ok = yield from self.wait_until(lambda: self.semaphore(sem) >= value,
                                        (self.sem_changed,) + wake, abandoned)
        if ok:
            self.regs.hw_write(f"SEM[{sem}]", self.semaphore(sem) - value)
        return ok

    def _sem_index(self, sem: int) -> int:
        if not 0 <= sem < N_SEMAPHORES:
            raise QueueFault(ErrCode.MALFORMED_PACKET, f"semaphore {sem} of {N_SEMAPHORES}")
        return sem

    def _op_sem_signal(self, queue, pkt):
        self.sem_signal(self._sem_index(pkt.fields["sem"]), pkt.fields["value"])

    def _op_sem_wait(self, queue, pkt):
        yield from self.sem_wait(self._sem_index(pkt.fields["sem"]), pkt.fields["value"],
                                 (queue.kick,), self._abandoned(queue))

    def _op_fence(self, queue, pkt):
        self.regs.hw_write(f"FENCE[{queue.index}]", pkt.fields["value"])
        if pkt.flag("irq"):
            self.irq.trigger(1 << IRQ_BIT["CP_FENCE"])

    def _op_timestamp(self, queue, pkt):
        trans = Payload.write(pkt.fields["address"], np.array([self.now // NS], "<u8"))
        delay = self.socket.b_transport(trans, 0)
        if not trans.is_ok:
            raise QueueFault(ErrCode.DESC_RANGE, f"timestamp to 0x{pkt.fields['address']:x}")
        self.timestamp_bytes += trans.length
        yield self.sim.delay(delay)

    def _op_irq(self, queue, pkt):
        self.irq.trigger(pkt.fields["bits"])

    # -- counters and reset ------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """Packets executed, ring bytes fetched, timestamp bytes written."""
        return {"packets": sum(q.packets for q in self.queues),
                "ring_read_bytes": self.ring_read_bytes, "timestamp_bytes": self.timestamp_bytes}

    def reset(self) -> None:
        for q in range(N_QUEUES):
            self.reset_queue(q)
        self.regs.reset()
        self.regs.hw_write("CORES", len(self.cores))
        self.progress = 0
        self.ring_read_bytes = self.timestamp_bytes = 0
        for queue in self.queues:
            queue.packets = 0
        self._drive_error_irq()
