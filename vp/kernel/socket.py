"""Initiator and target sockets, and the direct memory interface (TLM-2.0 style).

A target implements the forward interface :class:`TargetInterface`: ``b_transport`` (blocking,
with delay annotation), ``transport_dbg`` (no side effects, no time) and
``get_direct_mem_ptr`` (DMI). An initiator socket bound to a target socket calls straight into
the target's methods: no queue, no copy. Targets revoke DMI through their socket's backward
path, ``invalidate_direct_mem_ptr``, which reaches every bound initiator's DMI cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from vp.kernel.payload import Payload


@dataclass
class DmiRegion:
    """Direct access to ``[start, end]`` (inclusive byte addresses, in the granting
    initiator's address space) through ``data``, a uint8 view whose index 0 is ``start``.

    Latencies are picoseconds per access the initiator should add to its local time.
    """

    start: int
    end: int
    data: np.ndarray
    read_latency_ps: int = 0
    write_latency_ps: int = 0
    allow_read: bool = True
    allow_write: bool = True

    def contains(self, address: int, length: int = 1) -> bool:
        return self.start <= address and address + length - 1 <= self.end

    def translated(self, offset: int) -> "DmiRegion":
        """The same region seen ``offset`` bytes higher (routers add their base)."""
        return DmiRegion(self.start + offset, self.end + offset, self.data,
                         self.read_latency_ps, self.write_latency_ps,
                         self.allow_read, self.allow_write)


class TargetInterface(Protocol):
    def b_transport(self, trans: Payload, delay_ps: int) -> int: ...
    def transport_dbg(self, trans: Payload) -> int: ...
    def get_direct_mem_ptr(self, trans: Payload) -> DmiRegion | None: ...


class TargetSocket:
    """Where initiators connect to ``target`` (an object with the forward interface)."""

    def __init__(self, name: str, target: TargetInterface):
        self.name = name
        self.target = target
        self._initiators: list[InitiatorSocket] = []

    def invalidate_direct_mem_ptr(self, start: int, end: int) -> None:
        """Backward path: the target revokes DMI over ``[start, end]`` (its own addresses)."""
        for initiator in self._initiators:
            initiator.invalidate_direct_mem_ptr(start, end)

    def __repr__(self) -> str:
        return f"TargetSocket({self.name!r})"


def _unbound(name: str):
    def fail(*_args, **_kw):
        raise RuntimeError(f"initiator socket {name!r} is not bound to a target")
    return fail


class InitiatorSocket:
    """Issues transactions; after :meth:`bind` its methods are the target's own.

    ``on_invalidate(start, end)`` is called when a target revokes DMI; the socket also keeps
    a small DMI cache (:meth:`dmi_lookup`) that such a revocation clears.
    """

    def __init__(self, name: str, on_invalidate: Callable[[int, int], None] | None = None):
        self.name = name
        self.on_invalidate = on_invalidate
        self.bound_to: TargetSocket | None = None
        self._dmi: list[DmiRegion] = []
        self.b_transport = _unbound(name)
        self.transport_dbg = _unbound(name)
        self.get_direct_mem_ptr = _unbound(name)

    def bind(self, target: TargetSocket) -> None:
        if self.bound_to is not None:
            raise RuntimeError(f"initiator socket {self.name!r} is already bound to "
                               f"{self.bound_to.name!r}")
        self.bound_to = target
        target._initiators.append(self)
        t = target.target
        # Bound methods of the target: a call through the socket costs one attribute lookup.
        self.b_transport = t.b_transport
        self.transport_dbg = t.transport_dbg
        self.get_direct_mem_ptr = t.get_direct_mem_ptr

    def dmi_lookup(self, address: int, length: int, write: bool) -> DmiRegion | None:
        """A cached DMI region covering the access, asking the target once if none is cached."""
        for region in self._dmi:
            if region.contains(address, length) and (region.allow_write if write else region.allow_read):
                return region
        probe = Payload.write(address, np.zeros(length, np.uint8)) if write else Payload.read(address, length)
        region = self.get_direct_mem_ptr(probe)
        if region is None or not region.contains(address, length):
            return None
        if not any((r.start, r.end) == (region.start, region.end) for r in self._dmi):
            self._dmi.append(region)
        return region if (region.allow_write if write else region.allow_read) else None

    def invalidate_direct_mem_ptr(self, start: int, end: int) -> None:
        self._dmi = [r for r in self._dmi if r.end < start or r.start > end]
        if self.on_invalidate is not None:
            self.on_invalidate(start, end)

    def __repr__(self) -> str:
        return f"InitiatorSocket({self.name!r})"
