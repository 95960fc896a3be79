"""HBM: the board's main memory, as a TLM target over a sparse backing store.

Programming model: none; HBM is plain memory at ``hbm.base`` in the system address space.
Timing (loosely timed, one transaction per burst of any size): a burst starts when both the
initiator's time and the memory are free, occupies the memory for ``bytes / bandwidth``, and
its data is there ``latency`` after the transfer ends::

    start = max(now + delay, busy_until)
    busy_until = start + ceil(bytes / bandwidth)
    delay' = busy_until + latency - now

The bank/channel/row-buffer model of DESIGN.md §1 refines this later; the interface stays.
Direct memory access is granted page by page. Contents survive a soft reset.
"""

from __future__ import annotations

import numpy as np

from vp.kernel import Command, DmiRegion, Module, Payload, Response, SparseMemory, TargetSocket
from vp.kernel.time import transfer_ps


class Hbm(Module):
    """``size`` bytes of memory with ``latency_ps`` access latency and ``bandwidth`` bytes/s."""

    def __init__(self, parent, name: str, size: int, latency_ps: int, bandwidth: int):
        super().__init__(parent, name)
        self.latency_ps = latency_ps
        self.bandwidth = bandwidth
        self.store = SparseMemory(size)
        self.target_socket = TargetSocket(f"{self.full_name}.in", self)
        # Architectural state, plain data.
        self.busy_until_ps = 0
        self.bytes_read = 0
        self.bytes_written = 0

    @property
    def size(self) -> int:
        return self.store.size

    # -- forward interface -------------------------------------------------------------------
    def b_transport(self, trans: Payload, delay_ps: int) -> int:
        if not self._access(trans):
            return delay_ps
        start = max(self.sim.now + delay_ps, self.busy_until_ps)
        self.busy_until_ps = start + transfer_ps(trans.length, self.bandwidth)
        if trans.command == Command.READ:
            self.bytes_read += trans.length
        elif trans.command == Command.WRITE:
            self.bytes_written += trans.length
        return self.busy_until_ps + self.latency_ps - self.sim.now

    def transport_dbg(self, trans: Payload) -> int:
        return trans.length if self._access(trans) else 0

    def get_direct_mem_ptr(self, trans: Payload) -> DmiRegion | None:
        if not self.store.check(trans.address, 1):
            return None
        index = trans.address // self.store.page_bytes
        start = index * self.store.page_bytes
        return DmiRegion(start, start + self.store.page_bytes - 1, self.store.page(index),
                         read_latency_ps=self.latency_ps, write_latency_ps=self.latency_ps)

    def _access(self, trans: Payload) -> bool:
        """Move the data of ``trans``; False (with an error response) when refused."""
        if not self.store.check(trans.address, trans.length):
            trans.response = Response.ADDRESS_ERROR
            return False
        if trans.streaming_width != trans.length:
            trans.response = Response.BURST_ERROR
            return False
        if trans.command == Command.WRITE:
            if trans.byte_enable is None:
                self.store.write(trans.address, trans.data)
            else:
                self._masked_write(trans)
        elif trans.command == Command.READ:
            self.store.read_into(trans.address, trans.data)
            if trans.byte_enable is not None:
                trans.data[self._enables(trans) == 0] = 0
        trans.response = Response.OK
        return True

    @staticmethod
    def _enables(trans: Payload) -> np.ndarray:
        return np.resize(trans.byte_enable, trans.length)

    def _masked_write(self, trans: Payload) -> None:
        merged = self.store.read(trans.address, trans.length)
        enabled = self._enables(trans) != 0
        merged[enabled] = trans.data[enabled]
        self.store.write(trans.address, merged)

    # -- reset -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Soft reset: timing state and counters clear, contents are kept."""
        self.busy_until_ps = 0
        self.bytes_read = 0
        self.bytes_written = 0

    def power_on(self) -> None:
        """Power-on reset: contents are lost too."""
        self.reset()
        self.store.clear()
