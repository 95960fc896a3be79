"""System control: the ``id`` and ``rst`` register blocks.

Programming model (see docs/regmap.md): ``id.ID``, ``id.VERSION`` and ``id.FEATURES``
identify the register map (the driver checks them at open); ``id.SCRATCH`` is free for
software; ``id.HBM_SIZE_LO/HI`` give the HBM size in bytes; reading ``id.TIMESTAMP_LO``
samples simulated time in nanoseconds and latches the upper half into ``id.TIMESTAMP_HI``.
Writing 1 to ``rst.RESET_CTRL.SOFT_RESET`` resets every block (HBM contents and time are kept).
"""

from __future__ import annotations

from typing import Callable

from models.regblock import RegisterBlock
from vp.kernel import NS, Module
from vp.spec.regmap import REGMAP

_MASK32 = 0xFFFF_FFFF


class SystemControl(Module):
    """Identification, timestamp and soft reset."""

    def __init__(self, parent, name: str, hbm_size: int, soft_reset: Callable[[], None]):
        super().__init__(parent, name)
        self.hbm_size = hbm_size
        self.id_regs = RegisterBlock(REGMAP.block("id"))
        self.rst_regs = RegisterBlock(REGMAP.block("rst"))
        self.id_regs.on_read("TIMESTAMP_LO", self._latch_timestamp)
        self.rst_regs.on_write("RESET_CTRL", self._on_reset_ctrl)
        self._soft_reset = soft_reset
        self.soft_resets = 0
        self._load_board_values()

    def _load_board_values(self) -> None:
        self.id_regs.hw_write("HBM_SIZE_LO", self.hbm_size & _MASK32)
        self.id_regs.hw_write("HBM_SIZE_HI", self.hbm_size >> 32)

    def _latch_timestamp(self) -> None:
        ns = self.now // NS
        self.id_regs.hw_write("TIMESTAMP_LO", ns & _MASK32)
        self.id_regs.hw_write("TIMESTAMP_HI", (ns >> 32) & _MASK32)

    def _on_reset_ctrl(self, written: int, _old: int) -> None:
        if REGMAP.reg("rst.RESET_CTRL").field("SOFT_RESET").extract(written):
            self.soft_resets += 1
            self._soft_reset()

    def reset(self) -> None:
        self.id_regs.reset()
        self.rst_regs.reset()
        self._load_board_values()
