"""The transport interface: how the driver reaches a board (part of the host/board contract).

A transport is a thin adapter that carries the plain requests of :mod:`vp.spec.host` to a board
and brings back its answers. It holds no device logic. Implementations: the embedded board
(``vp.embedded``, loaded by name for ``embedded://`` URLs) and gRPC (``drivers.transport_grpc``).
Nothing above this interface knows which one it has.

Every method raises ``vp.spec.errors.GuestError`` for errors the board reports the way hardware
would, ``vp.spec.errors.RequestError`` for requests refused as malformed or oversized, and
:class:`TransportError` when the link itself fails.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from vp.spec.host import DeviceInfo, RegBatchReply, RegOp


class TransportError(ConnectionError):
    """The link to the board failed (server gone, connection refused, protocol error)."""


class Transport(ABC):
    """Carries host requests to one board. Times are simulated picoseconds."""

    @abstractmethod
    def info(self) -> DeviceInfo:
        """Identity, geometry and current simulated time of the board."""

    @abstractmethod
    def reg_batch(self, ops: Sequence[RegOp]) -> RegBatchReply:
        """Execute register operations in order, atomically with respect to the simulation;
        stops after the first op whose status is not OK."""

    @abstractmethod
    def write_mem(self, address: int, data: np.ndarray) -> int:
        """Write the bytes of ``data`` to board memory at ``address``; returns now (ps)."""

    @abstractmethod
    def read_mem(self, address: int, nbytes: int,
                 out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Read ``nbytes`` from board memory into ``out`` (a writable C-contiguous uint8 array
        of ``nbytes``; a new array when None); returns (that array, now in ps)."""

    @abstractmethod
    def wait_irq(self, mask: int, timeout_ps: int) -> tuple[int, int]:
        """Run the board until an unmasked interrupt in ``mask`` is pending or ``timeout_ps``
        of simulated time pass; returns (pending bits & mask, 0 on timeout; now in ps)."""

    @abstractmethod
    def stats(self) -> dict:
        """Counters of every unit, utilisation per core kind and energy since the last reset:
        ``{"now_ps", "elapsed_ps", "units": {unit: {counter: int}}, "kinds": {kind: {...}},
        "energy_pj": {action: pJ}}``."""

    @abstractmethod
    def reset(self) -> int:
        """Reset the board to its power-on state (time keeps running); returns now (ps)."""

    @abstractmethod
    def close(self) -> None:
        """Release the link (and, for the embedded board, the board itself)."""
