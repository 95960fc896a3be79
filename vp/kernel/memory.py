"""Sparse byte store (the backing memory of HBM and SRAM models) and a plain memory target.

Memory is a dict of fixed-size pages (numpy ``uint8`` arrays) created on first write, so a
64 GiB board costs only the pages the program touched. Unwritten bytes read as zero. The
pages are plain data: ``state()`` / ``load_state()`` snapshot and restore them.
"""

from __future__ import annotations

import numpy as np

from vp.kernel.payload import Command, Response
from vp.kernel.socket import DmiRegion, TargetSocket
from vp.spec.units import SEC

DEFAULT_PAGE_BYTES = 1 << 16
# Hot-path constants: an IntEnum attribute lookup costs ~75 ns on CPython 3.11.
_READ, _WRITE = Command.READ, Command.WRITE
_OK, _ADDRESS_ERROR, _BURST_ERROR = Response.OK, Response.ADDRESS_ERROR, Response.BURST_ERROR


class SparseMemory:
    """``size`` bytes of zero-initialised memory, allocated page by page. Offsets are bytes."""

    def __init__(self, size: int, page_bytes: int = DEFAULT_PAGE_BYTES):
        if page_bytes <= 0 or page_bytes & (page_bytes - 1):
            raise ValueError(f"page size {page_bytes} must be a power of two")
        if size <= 0:
            raise ValueError(f"memory size {size} must be positive")
        self.size = size
        self.page_bytes = page_bytes
        self._shift = page_bytes.bit_length() - 1
        self.pages: dict[int, np.ndarray] = {}

    @property
    def allocated_bytes(self) -> int:
        """Bytes of host memory held by touched pages."""
        return len(self.pages) * self.page_bytes

    def check(self, offset: int, length: int) -> bool:
        """True when ``[offset, offset+length)`` lies inside the memory."""
        return 0 <= offset and length >= 0 and offset + length <= self.size

    def page(self, index: int) -> np.ndarray:
        """Page ``index``, created (zeroed) if absent; used for DMI."""
        page = self.pages.get(index)
        if page is None:
            page = self.pages[index] = np.zeros(self.page_bytes, dtype=np.uint8)
        return page

    def _spans(self, offset: int, length: int):
        # (page index, offset in page, offset in buffer, bytes) for each page the range touches.
        done = 0
        while done < length:
            index = (offset + done) >> self._shift
            start = (offset + done) & (self.page_bytes - 1)
            n = min(self.page_bytes - start, length - done)
            yield index, start, done, n
            done += n

    def write(self, offset: int, data: np.ndarray) -> None:
        """Copy the uint8 array ``data`` to ``offset``."""
        start = offset & (self.page_bytes - 1)
        end = start + len(data)
        if end <= self.page_bytes:  # within one page: the common case, no span generator
            page = self.pages.get(offset >> self._shift)
            if page is None:
                page = self.page(offset >> self._shift)
            page[start:end] = data
            return
        for index, start, pos, n in self._spans(offset, len(data)):
            if n == self.page_bytes and index not in self.pages:
                self.pages[index] = data[pos:pos + n].copy()   # touch a new page once, not twice
            else:
                self.page(index)[start:start + n] = data[pos:pos + n]

    def read_into(self, offset: int, out: np.ndarray) -> None:
        """Fill the uint8 array ``out`` from ``offset``; absent pages read as zero."""
        start = offset & (self.page_bytes - 1)
        end = start + len(out)
        if end <= self.page_bytes:  # within one page: the common case
            page = self.pages.get(offset >> self._shift)
            if page is None:
                out[:] = 0
            else:
                out[:] = page[start:end]
            return
        # Many pages (a weight tile): whole pages between a partial first and last one.
        pages, size, length = self.pages, self.page_bytes, len(out)
        index, pos = offset >> self._shift, 0
        while pos < length:
            n = min(size - start, length - pos)
            page = pages.get(index)
            if page is None:
                out[pos:pos + n] = 0
            elif n == size:
                out[pos:pos + n] = page
            else:
                out[pos:pos + n] = page[start:start + n]
            index, pos, start = index + 1, pos + n, 0

    def read(self, offset: int, length: int) -> np.ndarray:
        """A new uint8 array with ``length`` bytes from ``offset``."""
        out = np.empty(length, dtype=np.uint8)
        self.read_into(offset, out)
        return out

    def copy(self, src: int, dst: int, length: int, chunk: int = 1 << 22) -> None:
        """Copy ``length`` bytes inside the memory (overlap-safe, like memmove)."""
        if src < dst < src + length:  # destination overlaps ahead of source: copy from the end
            bounds = [(max(0, hi - chunk), hi) for hi in range(length, 0, -chunk)]
        else:
            bounds = [(lo, min(lo + chunk, length)) for lo in range(0, length, chunk)]
        for lo, hi in bounds:
            self.write(dst + lo, self.read(src + lo, hi - lo))

    def clear(self) -> None:
        """Forget every page (all bytes read zero again)."""
        self.pages.clear()

    def state(self) -> dict:
        """Plain-data snapshot: page size and a copy of each touched page."""
        return {"size": self.size, "page_bytes": self.page_bytes,
                "pages": {i: p.copy() for i, p in self.pages.items()}}

    def load_state(self, state: dict) -> None:
        if state["size"] != self.size or state["page_bytes"] != self.page_bytes:
            raise ValueError("snapshot geometry does not match this memory")
        self.pages = {int(i): np.array(p, dtype=np.uint8) for i, p in state["pages"].items()}


class MemoryTarget:
    """A plain TLM memory (SystemC's "simple memory"): ``size`` bytes of :class:`SparseMemory`
    behind a target socket, ``latency_ps`` per access plus ``bytes / bandwidth``.

    Honours debug transport, grants DMI page by page, answers ``ADDRESS_ERROR`` outside its
    range and ``BURST_ERROR`` for streaming widths. Device models with their own timing (HBM,
    SRAM) build on :class:`SparseMemory` directly; this is the kernel's reference target.
    """

    def __init__(self, name: str, size: int, latency_ps: int = 0, bandwidth: int = 0):
        self.name = name
        self.store = SparseMemory(size)
        self.latency_ps = latency_ps
        self.bandwidth = bandwidth
        self.target_socket = TargetSocket(f"{name}.in", self)

    def _access(self, trans) -> bool:
        if not self.store.check(trans.address, trans.length):
            trans.response = _ADDRESS_ERROR
            return False
        if trans.streaming_width != trans.length:
            trans.response = _BURST_ERROR
            return False
        if trans.command is _WRITE:
            self.store.write(trans.address, trans.data)
        elif trans.command is _READ:
            self.store.read_into(trans.address, trans.data)
        trans.response = _OK
        return True

    def b_transport(self, trans, delay_ps: int) -> int:
        if not self._access(trans):
            return delay_ps
        if self.bandwidth:
            delay_ps += -(-trans.length * SEC // self.bandwidth)
        return delay_ps + self.latency_ps

    def transport_dbg(self, trans) -> int:
        return trans.length if self._access(trans) else 0

    def get_direct_mem_ptr(self, trans):
        if not self.store.check(trans.address, 1):
            return None
        index = trans.address // self.store.page_bytes
        start = index * self.store.page_bytes
        return DmiRegion(start, start + self.store.page_bytes - 1, self.store.page(index),
                         read_latency_ps=self.latency_ps, write_latency_ps=self.latency_ps)

