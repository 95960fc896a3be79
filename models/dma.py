"""DMA engine: the ``dma`` register block, copying inside HBM (QEMU's ``edu`` DMA, grown up).

Programming model (see docs/regmap.md):

1. write the source and destination HBM byte addresses to ``SRC_LO/HI`` and ``DST_LO/HI`` and
   the byte count to ``LEN``;
2. write ``CTRL`` with ``START`` = 1 (keep ``IRQ_EN`` = 1 for an interrupt);
3. ``STATUS.BUSY`` reads 1 until the copy completes; then ``STATUS.DONE`` = 1, ``BYTES`` holds
   the count, and ``DMA_DONE`` is raised in ``irq`` while ``DONE`` is set (write 1 to clear).

A zero length, a range outside HBM or a start while busy is a guest error: ``STATUS.ERROR``,
the error unit's record (code ``DMA_LENGTH`` / ``DMA_RANGE`` / ``DMA_BUSY``, source ``DMA``) and
the ``DMA_ERROR`` interrupt; nothing is copied.

Timing: a transfer started at ``t0`` completes at ``t0 + latency + ceil(LEN / bandwidth)`` with
the engine's end-to-end ``latency`` (ps) and ``bandwidth`` (bytes/s) from the board file. The
data moves through the system bus in chunks, one read and one write transaction each.
"""

from __future__ import annotations


from models.error_unit import ErrorUnit
from models.irq import IRQ_BIT, InterruptController
from models.regblock import RegisterBlock
from vp.kernel import InitiatorSocket, Module, Payload
from vp.kernel.time import transfer_ps
from vp.spec.regmap import REGMAP, ErrCode, ErrSource

_BLOCK = REGMAP.block("dma")
#: Bytes per bus transaction while copying (bounds host memory used by one copy).
CHUNK_BYTES = 4 << 20


class Dma(Module):
    """One register-programmed copy engine. Addresses are HBM byte addresses on the bus."""

    def __init__(self, parent, name: str, latency_ps: int, bandwidth: int,
                 hbm_base: int, hbm_size: int, irq: InterruptController, errors: ErrorUnit):
        super().__init__(parent, name)
        self.latency_ps = latency_ps
        self.bandwidth = bandwidth
        self.hbm_base, self.hbm_size = hbm_base, hbm_size
        self.irq, self.errors = irq, errors
        self.regs = RegisterBlock(_BLOCK)
        self.regs.on_write("CTRL", self._on_ctrl)
        self.regs.on_write("STATUS", lambda _new, _old: self._drive_irqs())
        self.socket = InitiatorSocket(f"{self.full_name}.bus")
        self.kick = self.event("kick")
        # Architectural state, plain data: the transfer in flight (None when idle).
        self.transfer: dict | None = None
        self.transfers_done = 0
        self.bytes_copied = 0
        self.spawn(self._engine(), "engine")

    # -- register side effects -------------------------------------------------------------
    def _on_ctrl(self, written: int, _old: int) -> None:
        if _BLOCK.reg("CTRL").field("START").extract(written):
            self._start()

    def _start(self) -> None:
        regs = self.regs
        src = regs.hw_read("SRC_LO") | regs.hw_read("SRC_HI") << 32
        dst = regs.hw_read("DST_LO") | regs.hw_read("DST_HI") << 32
        length = regs.hw_read("LEN")
        if self.transfer is not None:
            return self._fail(ErrCode.DMA_BUSY, src, 0)
        if length == 0:
            return self._fail(ErrCode.DMA_LENGTH, src, 0)
        for which, addr in ((0, src), (1, dst)):
            if not (self.hbm_base <= addr and addr + length <= self.hbm_base + self.hbm_size):
                return self._fail(ErrCode.DMA_RANGE, addr, which)
        done_at = self.now + self.latency_ps + transfer_ps(length, self.bandwidth)
        self.transfer = {"src": src, "dst": dst, "length": length, "done_at_ps": done_at}
        regs.hw_write("STATUS", 1, "BUSY")
        self.kick.notify(done_at - self.now)

    def _fail(self, code: ErrCode, address: int, syndrome: int) -> None:
        self.regs.hw_write("STATUS", 1, "ERROR")
        self.errors.report(code, ErrSource.DMA, address, syndrome)
        self._drive_irqs()

    # -- the engine ---------------------------------------------------------------------------
    def _engine(self):
        while True:
            yield self.kick
            t = self.transfer
            if t is not None and self.now >= t["done_at_ps"]:
                self._copy(t["src"], t["dst"], t["length"])
                self._complete(t["length"])

    def _copy(self, src: int, dst: int, length: int) -> None:
        # Functional data movement; the time was charged by done_at_ps. Chunks move in the
        # safe direction when the ranges overlap, like memmove.
        starts = range(0, length, CHUNK_BYTES)
        if src < dst < src + length:
            starts = reversed(starts)
        for lo in starts:
            n = min(CHUNK_BYTES, length - lo)
            rd = Payload.read(src + lo, n)
            self.socket.b_transport(rd, 0)
            wr = Payload.write(dst + lo, rd.data)
            self.socket.b_transport(wr, 0)
            if not (rd.is_ok and wr.is_ok):  # ranges were checked at start: a model bug
                raise RuntimeError(f"{self.full_name}: bus refused a checked copy: {rd} {wr}")

    def _complete(self, length: int) -> None:
        self.transfer = None
        self.transfers_done += 1
        self.bytes_copied += length
        self.regs.hw_write("BYTES", length)
        self.regs.hw_write("STATUS", 0, "BUSY")
        self.regs.hw_write("STATUS", 1, "DONE")
        self._drive_irqs()

    def _drive_irqs(self) -> None:
        enabled = bool(self.regs.hw_read("CTRL", "IRQ_EN"))
        self.irq.set_level(IRQ_BIT["DMA_DONE"], enabled and bool(self.regs.hw_read("STATUS", "DONE")))
        self.irq.set_level(IRQ_BIT["DMA_ERROR"], enabled and bool(self.regs.hw_read("STATUS", "ERROR")))

    def reset(self) -> None:
        """Abandon any transfer in flight; registers to reset values."""
        self.transfer = None
        self.kick.cancel()
        self.regs.reset()
        self._drive_irqs()
