"""Descriptor DMA engines: 2-D strided copies between any system addresses (HBM, SRAM).

Programming model: the command processor's ``DMA`` packet is the descriptor — source and
destination system addresses, ``rows`` rows of ``row_bytes`` bytes, each side with its own row
stride (``stride = row_bytes`` is a plain 1-D copy). The engines are a pool: a copy takes the
engine that frees up first.

Timing: a copy starting at ``t0`` on a free engine completes at::

    t0 + latency + max(rows · row_bytes / bandwidth,  memory-side time)

where the memory-side time is what the interconnect and the targets annotate on the copy's
read and write transactions (issued back to back, so HBM and NoC contention shows). Contiguous
copies move in chunks of up to ``CHUNK_BYTES``; strided copies move row by row. In performance
mode the transactions carry ``timing_only`` and move no data; a strided copy is then timed as
its rows, chunked the same way.

Errors (returned as an ``ErrCode``, the caller reports them): a zero-sized descriptor
(``DMA_LENGTH``), a range outside HBM and the SRAM apertures (``DESC_RANGE``). Nothing is moved
when a copy is refused.
"""

from __future__ import annotations

from typing import Callable

from vp.kernel import Command, InitiatorSocket, Module, Payload
from vp.kernel.time import transfer_ps
from vp.spec.regmap import ErrCode

CHUNK_BYTES = 4 << 20


class DmaEngines(Module):
    """``count`` engines of ``bandwidth`` bytes/s each with ``latency_ps`` setup per copy."""

    def __init__(self, parent, name: str, *, count: int, latency_ps: int, bandwidth: int,
                 valid_range: Callable[[int, int], bool], timing_only: bool = False):
        super().__init__(parent, name)
        self.latency_ps, self.bandwidth = latency_ps, bandwidth
        self.valid_range = valid_range
        self.timing_only = timing_only
        self.socket = InitiatorSocket(f"{self.full_name}.port")
        # Architectural state, plain data.
        self.busy_until_ps = [0] * count
        self.copies = 0
        self.bytes = 0
        self.busy_ps = 0

    def _check(self, src: int, dst: int, row_bytes: int, rows: int, src_stride: int,
               dst_stride: int) -> ErrCode:
        if row_bytes == 0 or rows == 0:
            return ErrCode.DMA_LENGTH
        for base, stride in ((src, src_stride), (dst, dst_stride)):
            span = (rows - 1) * stride + row_bytes
            if not self.valid_range(base, span):
                return ErrCode.DESC_RANGE
        return ErrCode.OK

    def copy(self, src: int, dst: int, row_bytes: int, rows: int, src_stride: int,
             dst_stride: int):
        """Generator: perform one copy, taking its time; returns ``ErrCode.OK`` or the error."""
        code = self._check(src, dst, row_bytes, rows, src_stride, dst_stride)
        if code != ErrCode.OK:
            return code
        engine = min(range(len(self.busy_until_ps)), key=self.busy_until_ps.__getitem__)
        start = max(self.now, self.busy_until_ps[engine])
        offset = start - self.now
        memory_ps = 0
        for s, d, n in self._pieces(src, dst, row_bytes, rows, src_stride, dst_stride):
            memory_ps = max(memory_ps, self._move(s, d, n, offset))
        nbytes = row_bytes * rows
        busy = self.latency_ps + max(transfer_ps(nbytes, self.bandwidth), memory_ps)
        self.busy_until_ps[engine] = start + busy
        self.copies += 1
        self.bytes += nbytes
        self.busy_ps += busy
        yield self.sim.delay(offset + busy)
        return ErrCode.OK

    @staticmethod
    def _pieces(src, dst, row_bytes, rows, src_stride, dst_stride):
        # (src, dst, bytes) of each transaction pair: chunks of a contiguous copy, else rows.
        if src_stride == row_bytes and dst_stride == row_bytes:
            total = row_bytes * rows
            for lo in range(0, total, CHUNK_BYTES):
                yield src + lo, dst + lo, min(CHUNK_BYTES, total - lo)
        else:
            for r in range(rows):
                yield src + r * src_stride, dst + r * dst_stride, row_bytes

    def _move(self, src: int, dst: int, nbytes: int, offset_ps: int) -> int:
        """Read then write one piece; returns the memory-side time both took (ps)."""
        rd = Payload.read(src, 0 if self.timing_only else nbytes)
        if self.timing_only:                 # no buffer: only the size travels
            rd.length = rd.streaming_width = nbytes
            rd.extensions["timing_only"] = True
        t_read = self.socket.b_transport(rd, offset_ps)
        wr = Payload(Command.WRITE, dst, rd.data)
        wr.length = wr.streaming_width = rd.length
        wr.extensions = rd.extensions
        t_write = self.socket.b_transport(wr, t_read)
        if not (rd.is_ok and wr.is_ok):  # ranges were checked: a refusal is a model bug
            raise RuntimeError(f"{self.full_name}: interconnect refused a checked copy "
                               f"{rd!r} {wr!r}")
        return t_write - offset_ps

    def reset(self) -> None:
        self.busy_until_ps = [0] * len(self.busy_until_ps)
        self.copies = self.bytes = self.busy_ps = 0

    def counters(self) -> dict[str, int]:
        """Counters for the stats call (bytes, copies, busy ps summed over engines)."""
        return {"copies": self.copies, "bytes": self.bytes, "busy_ps": self.busy_ps}
