"""Address router: one target socket in, one initiator socket per mapped range out.

Transactions are decoded by address, rebased to the target's own offsets, forwarded, and given
back their original address. An access that matches no range, or runs past the end of its
range, gets ``ADDRESS_ERROR`` without reaching any target. Overlapping ranges are refused when
they are mapped. DMI regions are translated into the initiator's address space on the way up,
and revocations from a target are translated the same way.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import replace

from vp.kernel.module import Module
from vp.kernel.payload import Payload, Response
from vp.kernel.socket import DmiRegion, InitiatorSocket, TargetInterface, TargetSocket


class AddressMapError(ValueError):
    """A mapping that overlaps another or is empty."""


class Router(Module):
    """Decodes addresses into mapped targets. Sizes and addresses are bytes."""

    def __init__(self, parent, name: str):
        super().__init__(parent, name)
        self.target_socket = TargetSocket(f"{self.full_name}.in", self)
        self._bases: list[int] = []
        self._ends: list[int] = []      # inclusive
        self._names: list[str] = []
        self._sockets: list[InitiatorSocket] = []

    def map(self, base: int, size: int, target: TargetSocket | TargetInterface, name: str) -> InitiatorSocket:
        """Route ``[base, base+size)`` to ``target`` (a socket, or an object with the
        forward interface, which gets a socket)."""
        if size <= 0 or base < 0:
            raise AddressMapError(f"{self.full_name}: mapping {name!r} has base 0x{base:x} "
                                  f"size {size}: needs base >= 0 and size > 0")
        end = base + size - 1
        for b, e, n in zip(self._bases, self._ends, self._names):
            if base <= e and b <= end:
                raise AddressMapError(
                    f"{self.full_name}: {name!r} [0x{base:x}, 0x{end:x}] overlaps "
                    f"{n!r} [0x{b:x}, 0x{e:x}]")
        if not isinstance(target, TargetSocket):
            target = TargetSocket(f"{self.full_name}.{name}", target)
        sock = InitiatorSocket(f"{self.full_name}.out.{name}",
                               on_invalidate=lambda s, e, off=base: self.target_socket.invalidate_direct_mem_ptr(s + off, e + off))
        sock.bind(target)
        i = bisect_right(self._bases, base)
        self._bases.insert(i, base)
        self._ends.insert(i, end)
        self._names.insert(i, name)
        self._sockets.insert(i, sock)
        return sock

    def ranges(self) -> list[tuple[str, int, int]]:
        """(name, base, size) of every mapping, in address order."""
        return [(n, b, e - b + 1) for n, b, e in zip(self._names, self._bases, self._ends)]

    def decode(self, address: int, length: int = 1) -> tuple[int, int] | None:
        """(index, base) of the mapping that wholly contains the access, or None."""
        i = bisect_right(self._bases, address) - 1
        if i < 0 or address + length - 1 > self._ends[i]:
            return None
        return i, self._bases[i]

    # -- forward interface ---------------------------------------------------------------------
    def b_transport(self, trans: Payload, delay_ps: int) -> int:
        address = trans.address
        i = bisect_right(self._bases, address) - 1
        if i < 0 or address + trans.length - 1 > self._ends[i]:
            trans.response = Response.ADDRESS_ERROR
            return delay_ps
        base = self._bases[i]
        trans.address = address - base
        try:
            return self._sockets[i].b_transport(trans, delay_ps)
        finally:
            trans.address = address

    def transport_dbg(self, trans: Payload) -> int:
        hit = self.decode(trans.address, max(trans.length, 1))
        if hit is None:
            trans.response = Response.ADDRESS_ERROR
            return 0
        i, base = hit
        address = trans.address
        trans.address = address - base
        try:
            return self._sockets[i].transport_dbg(trans)
        finally:
            trans.address = address

    def get_direct_mem_ptr(self, trans: Payload) -> DmiRegion | None:
        hit = self.decode(trans.address, max(trans.length, 1))
        if hit is None:
            return None
        i, base = hit
        address = trans.address
        trans.address = address - base
        try:
            region = self._sockets[i].get_direct_mem_ptr(trans)
        finally:
            trans.address = address
        if region is None:
            return None
        lo, hi = max(region.start, 0), min(region.end, self._ends[i] - base)
        if lo > hi:
            return None
        if (lo, hi) != (region.start, region.end):  # the target granted beyond this mapping
            region = replace(region, start=lo, end=hi,
                             data=region.data[lo - region.start:hi - region.start + 1])
        return region.translated(base)
