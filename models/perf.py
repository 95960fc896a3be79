"""Performance-counter window: the ``perf`` register block.

Programming model: write ``PERF_SEL`` with a unit index and a counter index (the order of
``vp.spec.perf_layout.flatten``: unit 0 is the board summary, then units by name; counters by
name),
then read ``PERF_LO`` — which samples the counter now and latches its upper half into
``PERF_HI`` — and ``PERF_HI``. A selection that names nothing reads 0.
"""

from __future__ import annotations

from typing import Callable

from models.regblock import RegisterBlock
from vp.spec.perf_layout import flatten
from vp.kernel import Module
from vp.spec.regmap import REGMAP

_SEL = REGMAP.reg("perf.PERF_SEL")


class PerfCounters(Module):
    """Reads the board's statistics through registers; ``stats`` returns the stats dict."""

    def __init__(self, parent, name: str, stats: Callable[[], dict]):
        super().__init__(parent, name)
        self.stats = stats
        self.regs = RegisterBlock(REGMAP.block("perf"))
        self.regs.on_read("PERF_LO", self._sample)

    def _sample(self) -> None:
        sel = self.regs.hw_read("PERF_SEL")
        unit, counter = _SEL.field("UNIT").extract(sel), _SEL.field("COUNTER").extract(sel)
        units = flatten(self.stats())
        value = 0
        if unit < len(units) and counter < len(units[unit][1]):
            value = max(0, units[unit][1][counter][1]) & ((1 << 64) - 1)
        self.regs.hw_write("PERF_LO", value & 0xFFFF_FFFF)
        self.regs.hw_write("PERF_HI", value >> 32)

    def reset(self) -> None:
        self.regs.reset()
