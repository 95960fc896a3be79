"""Error unit: the ``err`` register block, the board's first-error record.

Programming model: when a device reports a guest error (bad host access, DMA out of range, ...)
the unit latches its code, source, faulting address and syndrome into ``ERR_STATUS``,
``ERR_ADDR_LO/HI`` and ``ERR_SYNDROME`` and sets ``VALID``, which drives the ``GUEST_ERROR``
interrupt. Later errors while ``VALID`` is set only set ``OVERFLOW``. Every error increments
``ERR_COUNT`` (read-clears). Software writes 1 to ``VALID`` to clear the record. Errors are
the guest's, never the simulator's: nothing is raised, the board keeps running.
"""

from __future__ import annotations

from models.irq import IRQ_BIT, InterruptController
from models.regblock import RegisterBlock
from vp.kernel import Module
from vp.spec.regmap import REGMAP, ErrCode, ErrSource

_BLOCK = REGMAP.block("err")


class ErrorRecord:
    """One reported error, as plain data."""

    __slots__ = ("code", "source", "address", "syndrome")

    def __init__(self, code: ErrCode, source: ErrSource, address: int, syndrome: int):
        self.code, self.source, self.address, self.syndrome = code, source, address, syndrome

    def __repr__(self) -> str:
        return (f"ErrorRecord({self.code.name}, {self.source.name}, "
                f"address=0x{self.address:x}, syndrome=0x{self.syndrome:x})")


class ErrorUnit(Module):
    """Latches the first guest error and raises the GUEST_ERROR interrupt."""

    def __init__(self, parent, name: str, irq: InterruptController):
        super().__init__(parent, name)
        self.irq = irq
        self.regs = RegisterBlock(_BLOCK)
        self.regs.on_write("ERR_STATUS", self._on_status_write)
        self.last: ErrorRecord | None = None

    def report(self, code: ErrCode, source: ErrSource, address: int, syndrome: int = 0) -> ErrorRecord:
        """Record a guest error; returns it (for the host link to describe)."""
        record = ErrorRecord(code, source, address, syndrome)
        self.last = record
        regs = self.regs
        regs.hw_write("ERR_COUNT", min(regs.hw_read("ERR_COUNT") + 1, 0xFFFF_FFFF))  # saturates
        if regs.hw_read("ERR_STATUS", "VALID"):
            regs.hw_write("ERR_STATUS", 1, "OVERFLOW")
        else:
            regs.hw_write("ERR_STATUS", int(code), "CODE")
            regs.hw_write("ERR_STATUS", int(source), "SOURCE")
            regs.hw_write("ERR_STATUS", 1, "VALID")
            regs.hw_write("ERR_ADDR_LO", address & 0xFFFF_FFFF)
            regs.hw_write("ERR_ADDR_HI", (address >> 32) & 0xFFFF_FFFF)
            regs.hw_write("ERR_SYNDROME", syndrome & 0xFFFF_FFFF)
        self._drive_irq()
        return record

    def _on_status_write(self, _written: int, _old: int) -> None:
        if not self.regs.hw_read("ERR_STATUS", "VALID"):  # VALID cleared: the record goes too
            for field in ("CODE", "SOURCE"):
                self.regs.hw_write("ERR_STATUS", 0, field)
            for reg in ("ERR_ADDR_LO", "ERR_ADDR_HI", "ERR_SYNDROME"):
                self.regs.hw_write(reg, 0)
        self._drive_irq()

    def _drive_irq(self) -> None:
        self.irq.set_level(IRQ_BIT["GUEST_ERROR"], bool(self.regs.hw_read("ERR_STATUS", "VALID")))

    def reset(self) -> None:
        self.regs.reset()
        self.last = None
        self._drive_irq()
