"""Sparse byte store: the backing memory of HBM and SRAM models.

Memory is a dict of fixed-size pages (numpy ``uint8`` arrays) created on first write, so a
64 GiB board costs only the pages the program touched. Unwritten bytes read as zero. The
pages are plain data: ``state()`` / ``load_state()`` snapshot and restore them.
"""

from __future__ import annotations

import numpy as np

DEFAULT_PAGE_BYTES = 1 << 16


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
        for index, start, pos, n in self._spans(offset, len(data)):
            self.page(index)[start:start + n] = data[pos:pos + n]

    def read_into(self, offset: int, out: np.ndarray) -> None:
        """Fill the uint8 array ``out`` from ``offset``; absent pages read as zero."""
        for index, start, pos, n in self._spans(offset, len(out)):
            page = self.pages.get(index)
            if page is None:
                out[pos:pos + n] = 0
            else:
                out[pos:pos + n] = page[start:start + n]

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
