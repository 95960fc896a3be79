"""Interrupt controller: the ``irq`` register block (see docs/regmap.md).

Programming model: each source has a level (``INT_RAW``) driven by its device. A rising level,
or a 1 written to ``INT_SET``, latches the source into ``INT_STATUS``; software clears it by
writing 1 (W1C). ``INT_MASK`` bits keep a source off the host interrupt line, which is asserted
while ``INT_STATUS & ~INT_MASK`` is non-zero. ``line_changed`` fires whenever that value changes,
so the host link can run the board until an interrupt arrives.
"""

from __future__ import annotations

from models.regblock import RegisterBlock
from vp.kernel import Module
from vp.spec.regmap import REGMAP

_BLOCK = REGMAP.block("irq")
_SOURCES_MASK = _BLOCK.reg("INT_STATUS").defined_mask
#: Bit position of each interrupt source, by name (``DMA_DONE``, ``GUEST_ERROR``, ...).
IRQ_BIT = {f.name: f.lsb for f in _BLOCK.reg("INT_STATUS").fields}


class InterruptController(Module):
    """Latches device interrupt levels into INT_STATUS and drives the host interrupt line."""

    def __init__(self, parent, name: str):
        super().__init__(parent, name)
        self.regs = RegisterBlock(_BLOCK)
        self.line_changed = self.event("line_changed")
        self._line = 0
        for reg in ("INT_STATUS", "INT_MASK"):
            self.regs.on_write(reg, lambda _new, _old: self._update_line())
        self.regs.on_write("INT_SET", self._on_set)

    @property
    def pending(self) -> int:
        """Bits of INT_STATUS not masked: the host interrupt line (non-zero = asserted)."""
        return self._line

    def set_level(self, bit: int, level: bool) -> None:
        """Drive source ``bit``'s level; a rising edge latches it into INT_STATUS."""
        raw = self.regs.hw_read("INT_RAW")
        was = (raw >> bit) & 1
        raw = raw | (1 << bit) if level else raw & ~(1 << bit)
        self.regs.hw_write("INT_RAW", raw)
        if level and not was:
            self.regs.hw_write("INT_STATUS", self.regs.hw_read("INT_STATUS") | (1 << bit))
            self._update_line()

    def trigger(self, bits: int) -> None:
        """Latch the sources in ``bits`` into INT_STATUS (an event, not a level)."""
        if bits & _SOURCES_MASK:
            self.regs.hw_write("INT_STATUS", self.regs.hw_read("INT_STATUS") | (bits & _SOURCES_MASK))
            self._update_line()

    def _on_set(self, written: int, _old: int) -> None:
        self.trigger(written)

    def _update_line(self) -> None:
        line = self.regs.hw_read("INT_STATUS") & ~self.regs.hw_read("INT_MASK") & 0xFFFF_FFFF
        if line != self._line:
            self._line = line
            self.line_changed.notify()

    def reset(self) -> None:
        self.regs.reset()
        self._update_line()
