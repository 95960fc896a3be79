"""The generic payload: one memory-mapped transaction (TLM-2.0's ``tlm_generic_payload``).

Data travels as a zero-copy numpy ``uint8`` view: a target reads from or writes into
``payload.data`` in place, so a multi-megabyte burst is one Python object, not a copy per hop.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np


class Command(IntEnum):
    """What the initiator asks for."""

    READ = 0
    WRITE = 1
    IGNORE = 2


class Response(IntEnum):
    """How the target answered (TLM-2.0 response status)."""

    INCOMPLETE = 0   # not yet handled by any target
    OK = 1
    GENERIC_ERROR = -1
    ADDRESS_ERROR = -2      # no target, or outside the target's range
    COMMAND_ERROR = -3      # target refuses this command here (e.g. write to read-only)
    BURST_ERROR = -4        # length / alignment / streaming width not supported
    BYTE_ENABLE_ERROR = -5  # byte enables not supported


_INCOMPLETE = Response.INCOMPLETE   # hot path: an IntEnum attribute lookup costs ~75 ns


class Payload:
    """One transaction: ``command`` at ``address`` over ``length`` bytes of ``data``.

    Attributes:
        command: :class:`Command`.
        address: byte address as seen by the current target (routers rebase it).
        data: ``numpy.ndarray`` of ``uint8`` with ``length`` elements; writes read it,
            reads fill it in place.
        length: bytes (always ``len(data)``).
        byte_enable: optional ``uint8`` array, 0xFF = enabled, repeated over ``length``.
        streaming_width: bytes before the address wraps (``length`` = no streaming).
        response: :class:`Response`, set by the target.
        dmi_allowed: set by a target that would grant a direct memory pointer here.
        extensions: free-form per-transaction attributes (e.g. initiator id), by name.
    """

    __slots__ = ("command", "address", "data", "length", "byte_enable",
                 "streaming_width", "response", "dmi_allowed", "extensions")

    def __init__(self, command: Command, address: int, data: np.ndarray,
                 byte_enable: np.ndarray | None = None, streaming_width: int | None = None):
        self.command = command
        self.address = address
        self.data = data
        self.length = len(data)
        self.byte_enable = byte_enable
        self.streaming_width = self.length if streaming_width is None else streaming_width
        self.response = _INCOMPLETE
        self.dmi_allowed = False
        self.extensions: dict[str, Any] = {}

    @classmethod
    def read(cls, address: int, length: int) -> "Payload":
        """A read of ``length`` bytes into a fresh zeroed buffer."""
        return cls(Command.READ, address, np.zeros(length, dtype=np.uint8))

    @classmethod
    def write(cls, address: int, data: np.ndarray | bytes | memoryview) -> "Payload":
        """A write of ``data`` (viewed as bytes, not copied when already a uint8 array)."""
        return cls(Command.WRITE, address, as_bytes(data))

    @property
    def is_ok(self) -> bool:
        return self.response == Response.OK

    def __repr__(self) -> str:
        return (f"Payload({self.command.name} @0x{self.address:x} len={self.length} "
                f"{self.response.name})")


def as_bytes(data: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    """View any buffer (numpy array of any dtype, bytes, memoryview) as a flat uint8 array."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)
