"""Command queues: the host side of the command processor's rings.

A :class:`CommandQueue` owns one ring in HBM. It writes encoded packets (``vp.spec.isa``) at
the tail, rings the queue's doorbell, and waits for fences. When the board stops the queue on a
bad packet, the driver raises :class:`QueueError` naming the queue, the packet's ring offset and
opcode, and the cause. Sequence (docs/isa.md has the worked example)::

    q = CommandQueue(dev, 0, ring_address=0x1000, ring_size=64 * 1024)
    q.submit(isa.encode_packet("LAUNCH", core_mask=0b11, program=prog, arg=0),
             isa.encode_packet("WAIT_CORES", core_mask=0b11))
    q.sync(timeout_ps=10**12)         # FENCE + wait for it
"""

from __future__ import annotations

import numpy as np

from drivers.device import Device
from drivers.errors import DeviceError, DeviceTimeout
from vp.spec import isa
from vp.spec.regmap import REGMAP, ErrCode, ErrSource

_STATUS = REGMAP.reg("cp.Q_STATUS[0]")
N_QUEUES = 8


class QueueError(DeviceError):
    """A queue stopped on a packet. Attributes: ``queue``, ``offset`` (ring byte offset),
    ``opcode`` (name, or None if unreadable), plus DeviceError's ``code``, ``address``."""

    def __init__(self, queue: int, offset: int, opcode: str | None, code: int, address: int,
                 message: str):
        super().__init__(code, address, queue, message)
        self.queue, self.offset, self.opcode = queue, offset, opcode

    def __reduce__(self):
        return (type(self), (self.queue, self.offset, self.opcode, self.code, self.address,
                             self.message))


class CoreError(DeviceError):
    """A core stopped on an instruction. Attributes: ``core`` (id), ``address`` (HBM address of
    the instruction), plus DeviceError's ``code`` and ``syndrome``."""

    def __init__(self, core: int, code: int, address: int, message: str):
        super().__init__(code, address, core, message)
        self.core = core

    def __reduce__(self):
        return (type(self), (self.core, self.code, self.address, self.message))


class QueueFull(RuntimeError):
    """More packet bytes than the ring can take now (the board has not consumed them yet)."""


def _reached(fence: int, value: int) -> bool:
    """Whether a fence register reading ``fence`` has passed ``value``, in serial-number
    arithmetic (the 32-bit values wrap): up to 2^31 - 1 fences ahead counts as passed."""
    return (fence - value) & 0xFFFF_FFFF < 0x8000_0000


class CommandQueue:
    """Queue ``index`` with its ring of ``ring_size`` bytes at HBM ``ring_address``."""

    def __init__(self, dev: Device, index: int, ring_address: int, ring_size: int):
        if not 0 <= index < N_QUEUES:
            raise ValueError(f"queue index {index} is outside 0..{N_QUEUES - 1}")
        if ring_size < 64 or ring_size & (ring_size - 1):
            raise ValueError(f"ring size {ring_size} must be a power of two of at least 64 bytes")
        self.dev, self.index = dev, index
        self.address, self.size = ring_address, ring_size
        self.tail = 0
        dev.write_fields(f"cp.Q_CTRL[{index}]", RESET=1)
        b = dev.batch()
        b.write(f"cp.RING_BASE_LO[{index}]", ring_address & 0xFFFF_FFFF)
        b.write(f"cp.RING_BASE_HI[{index}]", ring_address >> 32)
        b.write(f"cp.RING_SIZE[{index}]", ring_size)
        b.write(f"cp.Q_CTRL[{index}]", REGMAP.reg("cp.Q_CTRL[0]").field("ENABLE").mask)
        b.execute()
        # Continue from the fence value the queue holds: a queue reset keeps cp.FENCE, so a
        # new owner counting from 1 would take an earlier owner's fences for its own.
        self._next_fence = dev.read_reg(f"cp.FENCE[{index}]") % 0xFFFF_FFFF + 1
        self.check()

    # -- submitting -------------------------------------------------------------------------
    def free_bytes(self) -> int:
        """Ring bytes the host may write now (one word stays free: full ≠ empty)."""
        head = self.dev.read_reg(f"cp.HEAD[{self.index}]")
        return (head - self.tail - 4) % self.size

    def submit(self, *packets: bytes) -> None:
        """Write ``packets`` at the tail and ring the doorbell once."""
        data = np.frombuffer(b"".join(packets), np.uint8)
        if len(data) == 0:
            return
        if len(data) > self.free_bytes():
            raise QueueFull(f"queue {self.index}: {len(data)} packet bytes do not fit the "
                            f"{self.free_bytes()} free bytes of the {self.size}-byte ring")
        first = min(len(data), self.size - self.tail)     # wrap at the end of the ring
        self.dev.write_mem(self.address + self.tail, data[:first])
        if first < len(data):
            self.dev.write_mem(self.address, data[first:])
        self.tail = (self.tail + len(data)) % self.size
        self.dev.write_reg(f"db.DOORBELL[{self.index}]", self.tail)

    def fence(self, irq: bool = True) -> int:
        """Submit a FENCE with the next value; returns the value to wait for."""
        value = self._next_fence
        self._next_fence = value % 0xFFFF_FFFF + 1
        self.submit(isa.encode_packet("FENCE", flags={"irq": irq}, value=value))
        return value

    # -- waiting ----------------------------------------------------------------------------
    def wait_fence(self, value: int, timeout_ps: int) -> None:
        """Run the board until this queue's FENCE reaches ``value``; raise :class:`QueueError`
        if the queue stops on an error, :class:`DeviceTimeout` after ``timeout_ps``."""
        dev = self.dev
        mask = dev.irq_mask("CP_FENCE", "CP_ERROR", "CORE_ERROR")
        deadline = dev.now_ps + timeout_ps
        while True:
            self.check()
            if _reached(dev.read_reg(f"cp.FENCE[{self.index}]"), value):
                return
            left = deadline - dev.now_ps
            if left <= 0:
                raise DeviceTimeout(f"queue {self.index}: fence {value} not reached within "
                                    f"{timeout_ps} ps (FENCE = "
                                    f"{dev.read_reg(f'cp.FENCE[{self.index}]')})")
            try:
                pending = dev.wait_irq(mask, left)
            except DeviceTimeout:
                continue            # the loop reports the timeout with the queue's state
            dev.ack_irq(pending & dev.irq_mask("CP_FENCE"))

    def sync(self, timeout_ps: int) -> None:
        """Fence and wait: every packet submitted so far has completed."""
        self.wait_fence(self.fence(), timeout_ps)

    def check(self) -> None:
        """Raise :class:`QueueError` if the board stopped this queue on an error, or
        :class:`CoreError` if a core stopped on an instruction (``CORE_ERROR``)."""
        core_error = self.dev.irq_mask("CORE_ERROR")
        if self.dev.read_reg("irq.INT_STATUS") & core_error:
            self.dev.ack_irq(core_error)      # reported once, like an interrupt handler does
            raise self._core_error()
        status = self.dev.read_reg(f"cp.Q_STATUS[{self.index}]")
        if not _STATUS.field("ERROR").extract(status):
            return
        code = _STATUS.field("CODE").extract(status)
        offset = self.dev.read_reg(f"cp.ERR_OFFSET[{self.index}]")
        opcode = self._opcode_at(offset)
        try:
            cause = ErrCode(code)
            why = f"{cause.name}: {cause.desc}"
        except ValueError:
            why = f"error code {code}"
        raise QueueError(self.index, offset, opcode, code, self.address + offset,
                         f"queue {self.index}: packet at ring offset 0x{offset:x} "
                         f"(opcode {opcode or '?'}) failed: {why}")

    def _core_error(self) -> CoreError:
        err = self.dev.last_error()
        if err is None or err["source"] != ErrSource.CORE:   # the record holds another error
            return CoreError(-1, 0, 0, "a core stopped on an error; the error record holds "
                                       f"an earlier error: {err}")
        code, core, address = err["code"], err["syndrome"] & 0xFFFF, err["address"]
        why = f"{code.name}: {code.desc}" if isinstance(code, ErrCode) else f"error code {code}"
        opcode = self._instruction_at(address)
        return CoreError(core, code, address, f"core {core}: instruction at 0x{address:x} "
                                              f"(opcode {opcode or '?'}) failed: {why}")

    def _instruction_at(self, address: int) -> str | None:
        try:
            header = int(self.dev.read_mem(address, 4).view("<u4")[0])
        except DeviceError:          # the core fetched from outside HBM: no opcode to name
            return None
        return isa.opcode_name(isa.INSTRUCTIONS, header & 0xFF)

    def _opcode_at(self, offset: int) -> str | None:
        header = int(self.dev.read_mem(self.address + offset, 4).view("<u4")[0])
        return isa.opcode_name(isa.PACKETS, header & 0xFF)

    def reset(self) -> None:
        """Clear the queue (and an error that stopped it); the ring is empty again."""
        self.dev.write_fields(f"cp.Q_CTRL[{self.index}]", RESET=1)
        self.tail = 0
