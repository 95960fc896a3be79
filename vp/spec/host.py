"""What crosses the host link, independent of transport.

These plain types are the one description of a host request and its answer. The device side
(``vp.host_port.HostPort``) produces them, every transport (embedded, gRPC) carries them
unchanged, and the driver consumes them. Nothing here knows about MyHDL, models or gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from vp.spec.errors import RequestError

#: Most register operations one batch may carry.
MAX_BATCH_OPS = 4096
#: Most bytes one memory read or write request may carry (the transport streams it in chunks).
MAX_MEM_REQUEST_BYTES = 1 << 30
#: Chunk size the transports use to stream bulk memory (bytes).
MEM_CHUNK_BYTES = 8 << 20


class RegOp(NamedTuple):
    """One 32-bit register access at a BAR byte ``address``; ``value`` is ignored for reads."""

    write: bool
    address: int
    value: int = 0


class RegResult(NamedTuple):
    """Answer to one :class:`RegOp`: ``status`` is an ``ErrCode`` (0 = OK); ``value`` is the
    read data, or for a refused op its error syndrome (as ``err.ERR_SYNDROME`` encodes it)."""

    status: int
    value: int


@dataclass(frozen=True)
class RegBatchReply:
    """Results of a batch, in order. Execution stops at the first failing op, so
    ``len(results) <= len(ops)`` and only the last result may carry a non-zero status."""

    results: list[RegResult]
    now_ps: int


@dataclass(frozen=True)
class DeviceInfo:
    """Identity and geometry of a board, as reported at open.

    Sizes are bytes; ``now_ps`` is the board's simulated time in picoseconds.
    """

    board_name: str
    device_id: int
    version: tuple[int, int, int]
    features: int
    bar_size: int
    hbm_base: int
    hbm_size: int
    link_latency_ps: int
    link_bytes_per_s: int
    now_ps: int
    extra: dict[str, str] = field(default_factory=dict)


def check_out_buffer(out: np.ndarray | None, nbytes: int) -> np.ndarray:
    """``out`` if it can receive ``nbytes`` read bytes, a new array if None; else RequestError."""
    if out is None:
        return np.empty(nbytes, dtype=np.uint8)
    if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 1
            and out.flags.c_contiguous and out.flags.writeable and len(out) == nbytes):
        raise RequestError(f"read buffer must be a writable contiguous 1-D uint8 array of "
                           f"{nbytes} bytes")
    return out
