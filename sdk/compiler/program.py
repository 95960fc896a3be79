"""What the step compiler builds: a step's segments, per-core programs under construction
(:class:`CoreEmitter`: encoded instructions and an SRAM bump allocator) and the compiled
:class:`StepProgram`.

Host-side code: imports only ``vp.spec`` and the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdk.compiler.target import CompileError, CoreInfo
from vp.spec import isa

#: SRAM buffers start on this boundary (bytes).
SRAM_ALIGN = 64


@dataclass
class Segment:
    """One sequence's new tokens in a step: ``ids`` (T,), starting at position ``pos0``;
    ``blocks``: its KV-cache block table (covering ``pos0 + T`` positions); ``types``: BERT
    token types or None. ``row`` (its output row) and ``r0`` (its first row in the
    micro-batch's buffers) are set by :meth:`StepCompiler.compile`."""

    ids: np.ndarray
    pos0: int
    blocks: list[int]
    row: int = 0
    types: np.ndarray | None = None
    r0: int = 0

    @property
    def T(self) -> int:
        return len(self.ids)


class CoreProgram:
    """One core's program for a step, as encoded instructions (built from fragments, some of
    them reused from earlier steps). Lists like :class:`vp.spec.isa.Program`: ``len``,
    ``nbytes``, ``to_bytes()``, iteration (decoded entries), ``disassemble()``."""

    __slots__ = ("parts", "count", "nbytes")

    def __init__(self):
        self.parts: list[bytes] = []
        self.count = self.nbytes = 0

    def add(self, data: bytes, count: int) -> None:
        self.parts.append(data)
        self.count += count
        self.nbytes += len(data)

    def __len__(self) -> int:
        return self.count

    def to_bytes(self) -> bytes:
        if len(self.parts) > 1:
            self.parts[:] = [b"".join(self.parts)]
        return self.parts[0] if self.parts else b""

    def __iter__(self):
        return isa.INSTRUCTIONS.decode_stream(self.to_bytes())

    def disassemble(self, base: int = 0, words: bool = False) -> str:
        return isa.INSTRUCTIONS.disassemble(self.to_bytes(), base=base, words=words)

    def __repr__(self) -> str:
        return f"<CoreProgram: {self.count} instructions, {self.nbytes} bytes>"


@dataclass
class StepProgram:
    """A compiled step: per-core programs, their HBM addresses, the packets to submit, the
    input images to write first and where each micro-batch's outputs land."""

    programs: dict[int, CoreProgram]
    addresses: dict[int, int]
    packets: list[bytes]
    inputs: list[tuple[int, np.ndarray]]
    outputs: list[tuple[int, int, int]]          # (micro-batch, rows, HBM address)
    timestamps: int
    instructions: int = 0

    def images(self):
        """(address, bytes) of every program and input."""
        for cid, p in self.programs.items():
            yield self.addresses[cid], np.frombuffer(p.to_bytes(), np.uint8)
        yield from self.inputs


_ENCODE = isa.INSTRUCTIONS.encode


class CoreEmitter:
    """A core's program under construction and its SRAM bump allocator (reset per stage to
    ``base``: stages exchange data through HBM; below ``base`` the core keeps a window of
    the model's norms for the whole step)."""

    def __init__(self, info: CoreInfo):
        self.info, self.p, self.top, self.base = info, CoreProgram(), 0, 0
        self.norms: tuple[int, int] | None = None     # HBM window [lo, hi) held at SRAM 0

    def emit(self, op: str, flags=None, **fields) -> None:
        self.p.add(_ENCODE(op, flags, **fields), 1)

    def alloc(self, nbytes: int, what: str) -> int:
        addr = self.top
        self.top = -(-(addr + max(nbytes, 4)) // SRAM_ALIGN) * SRAM_ALIGN
        if self.top > self.info.sram_bytes:
            raise CompileError(f"core {self.info.id}: {what} needs {self.top} bytes of SRAM, "
                               f"the core has {self.info.sram_bytes}")
        return addr

    def free(self) -> None:
        self.top = self.base

    def load(self, hbm: int, sram: int, nbytes: int) -> None:
        self.emit("LOAD", hbm=hbm, sram=sram, row_bytes=nbytes, rows=1, hbm_stride=nbytes,
                  sram_stride=nbytes)

    def store(self, hbm: int, sram: int, nbytes: int) -> None:
        self.emit("STORE", hbm=hbm, sram=sram, row_bytes=nbytes, rows=1, hbm_stride=nbytes,
                  sram_stride=nbytes)


def segment_key(s: Segment, positions: int) -> tuple:
    """What a program depends on in a segment: its rows, positions and the KV blocks of
    the first ``positions`` positions (token ids and positions are inputs, not code)."""
    return (s.r0, s.row, s.T, s.pos0, tuple(s.blocks[:positions]))


__all__ = ["CoreEmitter", "CoreProgram", "SRAM_ALIGN", "Segment", "StepProgram",
           "segment_key"]
