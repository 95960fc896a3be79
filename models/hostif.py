"""Host interface: the PCIe-like link between the host and the board.

It decodes BAR0 register accesses onto the register blocks (one window per block of the
register map), carries host memory requests onto the system bus, and reports refused accesses
as guest errors (error record + ``GUEST_ERROR`` interrupt), as hardware would.

Timing: every register access costs the link latency; a memory request costs the link latency
plus ``bytes / link bandwidth``. The board runs meanwhile; the caller (``vp.host_port``)
advances simulated time by :meth:`HostInterface.reg_cost_ps` / :meth:`mem_cost_ps` before
calling in, so accesses see the board as it is when they arrive.
"""

from __future__ import annotations

import numpy as np

from models.error_unit import ErrorRecord, ErrorUnit
from vp.kernel import Command, InitiatorSocket, Module, Payload, Response, Router
from vp.kernel.time import transfer_ps
from vp.spec.regmap import REGMAP, ErrCode, ErrSource

#: How a register target's TLM response maps to the error code the host sees.
_REG_ERRORS = {
    Response.ADDRESS_ERROR: ErrCode.BAD_ADDRESS,
    Response.BURST_ERROR: ErrCode.BAD_WIDTH,
    Response.BYTE_ENABLE_ERROR: ErrCode.BAD_WIDTH,
    Response.COMMAND_ERROR: ErrCode.READ_ONLY,
}
REG_BYTES = 4


def host_syndrome(write: bool, size: int) -> int:
    """ERR_SYNDROME of a host access: bit 0 = write, bits [7:4] = access size in bytes."""
    return int(write) | (size & 0xF) << 4


class HostInterface(Module):
    """BAR0 register decode and host memory access. Times in ps, sizes in bytes."""

    def __init__(self, parent, name: str, latency_ps: int, bandwidth: int,
                 mem_windows: list[tuple[int, int]], errors: ErrorUnit):
        super().__init__(parent, name)
        self.latency_ps = latency_ps
        self.bandwidth = bandwidth
        self.mem_windows = list(mem_windows)   # (base, size) reachable by memory requests
        self.errors = errors
        self.bar = Router(self, "bar")
        self.bar_socket = InitiatorSocket(f"{self.full_name}.bar_master")
        self.bar_socket.bind(self.bar.target_socket)
        self.mem_socket = InitiatorSocket(f"{self.full_name}.mem_master")
        # One reusable 4-byte transaction: register accesses are the hot path.
        self._reg = Payload.read(0, REG_BYTES)
        self._word = self._reg.data.view("<u4")
        self.reg_accesses = 0
        self.mem_read_bytes = 0
        self.mem_write_bytes = 0

    def map_block(self, block_name: str, target) -> None:
        """Decode the register map's block ``block_name`` onto ``target``."""
        block = REGMAP.block(block_name)
        self.bar.map(block.offset, block.size, target, block_name)

    # -- costs ---------------------------------------------------------------------------
    def reg_cost_ps(self) -> int:
        """Link time of one register access (ps)."""
        return self.latency_ps

    def mem_cost_ps(self, nbytes: int) -> int:
        """Link time of one memory request of ``nbytes`` (ps)."""
        return self.latency_ps + transfer_ps(nbytes, self.bandwidth)

    # -- registers -------------------------------------------------------------------------
    def reg_access(self, write: bool, address: int, value: int = 0) -> tuple[int, int]:
        """One 32-bit BAR0 access now; returns (0, read value) or, when refused,
        (ErrCode, syndrome)."""
        trans = self._reg
        trans.command = Command.WRITE if write else Command.READ
        trans.address = address
        trans.response = Response.INCOMPLETE
        self._word[0] = value if write else 0
        self.bar_socket.b_transport(trans, 0)
        self.reg_accesses += 1
        if trans.response == Response.OK:
            return 0, int(self._word[0])
        code = _REG_ERRORS.get(trans.response)
        if code is None:  # a register block answered something no register should
            raise RuntimeError(f"{self.full_name}: register target answered {trans!r}")
        record = self.errors.report(code, ErrSource.HOST, address, host_syndrome(write, REG_BYTES))
        return int(code), record.syndrome

    # -- memory ----------------------------------------------------------------------------
    def check_mem(self, address: int, nbytes: int, write: bool) -> ErrorRecord | None:
        """None when ``[address, address+nbytes)`` lies in one memory window (HBM, the host
        window); else the MEM_RANGE error reported for it."""
        if any(base <= address and address + nbytes <= base + size
               for base, size in self.mem_windows):
            return None
        return self.errors.report(ErrCode.MEM_RANGE, ErrSource.HOST, address,
                                  host_syndrome(write, 0))

    def write_mem(self, address: int, data: np.ndarray) -> None:
        """Write ``data`` (uint8) at ``address``; the range was checked by :meth:`check_mem`."""
        self._mem(Payload.write(address, data))

    def read_mem_into(self, address: int, out: np.ndarray) -> None:
        """Fill ``out`` (uint8) from ``address``; the range was checked by :meth:`check_mem`."""
        self._mem(Payload(Command.READ, address, out))

    def _mem(self, trans: Payload) -> None:
        self.mem_socket.b_transport(trans, 0)
        if not trans.is_ok:  # the range was checked: the bus refusing it is a model bug
            raise RuntimeError(f"{self.full_name}: bus refused a checked access: {trans!r}")
        if trans.command == Command.WRITE:
            self.mem_write_bytes += trans.length
        else:
            self.mem_read_bytes += trans.length

    def counters(self) -> dict[str, int]:
        """Register accesses and host memory bytes moved, by direction."""
        return {"reg_accesses": self.reg_accesses, "mem_read_bytes": self.mem_read_bytes,
                "mem_write_bytes": self.mem_write_bytes}

    def reset(self) -> None:
        self.reg_accesses = self.mem_read_bytes = self.mem_write_bytes = 0
