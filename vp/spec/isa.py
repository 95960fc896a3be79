"""Command packets and core instructions: one table, with the encoder and decoder derived from it.

Two binary formats share one layout (docs/design/npu.md §5; data sheet: the generated
``docs/isa.md``):

* **command packets** (:data:`PACKETS`), which the host writes into the command processor's
  rings in HBM;
* **core instructions** (:data:`INSTRUCTIONS`), the programs in HBM that ``LAUNCH`` starts on
  cores.

Every entry is a sequence of little-endian 32-bit words. Word 0 is the header
``opcode[7:0] | length_words[15:8] | flags[31:16]``; the opcode's fields follow in table order,
each ``u32``, ``i32``, ``f32`` (IEEE-754 binary32 bits) or ``u64`` (two words, low word first).
``length_words`` counts the header, so a decoder can check and skip an entry. Opcodes of the two
formats are disjoint (packets 0x80.., instructions 0x01..0x7F), so a program mistaken for a ring
stops with ``BAD_OPCODE`` instead of executing.

Everything else in this module is derived from :data:`PACKET_TABLE` and
:data:`INSTRUCTION_TABLE` (plain data): the per-opcode ``struct`` formats, the decoded-entry
classes, the encoder's checks, the disassembler and the data sheet (``vp/spec/gen_isa.py``).
Adding an opcode is adding a row.

Typical use::

    from vp.spec import isa
    ring = isa.encode_packet("LAUNCH", core_mask=0b11, program=0x10000, arg=0)
    p = isa.Program()                                   # core instructions
    p.GEMM(m=64, n=64, k=64, a=0, b=0x4000, c=0x8000, scale=0,
           dtype_a="FP32", dtype_b="FP32", accumulate=True)
    p.END()
    d = isa.decode(isa.INSTRUCTIONS, p.to_bytes())      # -> Decoded: d.op == "GEMM", d.m == 64
"""

from __future__ import annotations

import difflib
import keyword
import math
import operator
import struct
from dataclasses import dataclass, field as dc_field
from enum import IntEnum
from functools import partial
from typing import Iterable, Iterator, Mapping

import numpy as np

# ------------------------------------------------------------------------------------------
# Header layout and other constants of the format

#: Bytes per word; every entry is a whole number of little-endian words, word-aligned.
WORD_BYTES = 4
OPCODE_SHIFT, OPCODE_MASK = 0, 0xFF          # header bits [7:0]
LENGTH_SHIFT, LENGTH_MASK = 8, 0xFF          # header bits [15:8]: words including the header
FLAGS_SHIFT, FLAGS_MASK = 16, 0xFFFF         # header bits [31:16]
#: Longest entry the header can describe, in words.
MAX_LENGTH_WORDS = LENGTH_MASK
#: Number of flag bits in a header.
FLAG_BITS = 16
#: Width of a ``core_mask`` field: cores 0..63 are addressable.
MAX_CORES = 64
#: Storage of the index arrays instructions read from SRAM (ROPE ``positions``, EMBED ``ids``).
INDEX_DTYPE = np.dtype("<i4")
#: Element type of GEMM results and of every vector operation's operands.
ACCUMULATOR_DTYPE = np.dtype("<f4")
#: Unit of the value TIMESTAMP writes (simulated time), in picoseconds: nanoseconds.
TIMESTAMP_UNIT_PS = 1_000
#: Bytes TIMESTAMP writes (one little-endian u64).
TIMESTAMP_BYTES = 8

#: Decode-error causes; each is the name of an ``ErrCode`` of the register map.
BAD_OPCODE = "BAD_OPCODE"
MALFORMED_PACKET = "MALFORMED_PACKET"
MISALIGNED = "MISALIGNED"

#: Field kinds: struct code, words, value range (ints) for the encoder's check.
KINDS: dict[str, tuple[str, int, tuple[int, int] | None]] = {
    "u32": ("I", 1, (0, (1 << 32) - 1)),
    "i32": ("i", 1, (-(1 << 31), (1 << 31) - 1)),
    "u64": ("Q", 2, (0, (1 << 64) - 1)),
    "f32": ("f", 1, None),        # any float whose fp32 rounding is not an overflow
}
_F32_MAX = float(np.finfo(np.float32).max)


class DType(IntEnum):
    """Element type codes used by instruction fields (``dtype_a``, ``from_dtype``...)."""

    FP32 = 0
    BF16 = 1
    INT8 = 2

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return _DTYPE_BYTES[self]

    @property
    def storage(self) -> np.dtype:
        """numpy dtype holding the raw elements (bf16 is stored as its 16-bit pattern)."""
        return _DTYPE_STORAGE[self]


_DTYPE_BYTES = {DType.FP32: 4, DType.BF16: 2, DType.INT8: 1}
_DTYPE_STORAGE = {DType.FP32: np.dtype("<f4"), DType.BF16: np.dtype("<u2"),
                  DType.INT8: np.dtype("i1")}
#: Description of each dtype code, for the data sheet.
DTYPE_DESC = {
    DType.FP32: "IEEE-754 binary32.",
    DType.BF16: "bfloat16: the upper 16 bits of an fp32 (8-bit exponent, 7-bit mantissa).",
    DType.INT8: "Signed 8-bit integer; a scale gives its real value (weight-only quantisation).",
}
ENUMS = {"DType": DType}


class IsaError(ValueError):
    """An entry that cannot be encoded (unknown op or field, value out of range).

    Attributes: ``op`` (name or None), ``field`` (name or None), ``value``.
    """

    def __init__(self, message: str, op: str | None = None, field: str | None = None,
                 value=None):
        super().__init__(message)
        self.op, self.field, self.value = op, field, value


class DecodeError(IsaError):
    """Bytes that are not a valid entry.

    Attributes:
        cause: ``"BAD_OPCODE"``, ``"MALFORMED_PACKET"`` or ``"MISALIGNED"`` (``ErrCode`` names).
        offset: byte offset of the entry in the buffer.
        opcode: the header's opcode, or None when no header could be read.
        header: the header word, or None.
    """

    def __init__(self, cause: str, message: str, offset: int, opcode: int | None = None,
                 header: int | None = None, op: str | None = None):
        super().__init__(f"{cause}: {message}", op=op)
        self.cause, self.offset, self.opcode, self.header = cause, offset, opcode, header

    def __reduce__(self):
        return (_decode_error, (self.cause, str(self), self.offset, self.opcode, self.header,
                                self.op))


def _decode_error(cause, text, offset, opcode, header, op):
    e = DecodeError(cause, "", offset, opcode, header, op)
    e.args = (text,)
    return e


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


# ------------------------------------------------------------------------------------------
# Table types


@dataclass(frozen=True)
class Field:
    """One field of an entry: ``kind`` is ``u32``/``i32``/``u64``/``f32``; ``desc`` gives the
    meaning and units; ``enum`` names an enumeration of :data:`ENUMS` the value is drawn from;
    ``hex`` asks listings to print the value in hexadecimal (addresses, masks)."""

    name: str
    kind: str
    desc: str
    enum: str | None = None
    hex: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name!r}: unknown kind {self.kind!r} "
                             f"(kinds: {', '.join(KINDS)})")

    @property
    def words(self) -> int:
        return KINDS[self.kind][1]


@dataclass(frozen=True)
class Flag:
    """A header flag: ``bit`` is its index in ``flags`` (header bit ``16 + bit``)."""

    name: str
    bit: int
    desc: str

    @property
    def mask(self) -> int:
        """Mask in the ``flags`` value (not the header word)."""
        return 1 << self.bit


@dataclass(frozen=True)
class OpSpec:
    """One opcode: code, name, one-line description, fields (in word order), flags.

    Derived (not passed): ``length_words``, ``nbytes``, ``flag_mask``, ``word_offsets``
    (word index of each field), ``struct_format`` (of the whole entry, header included).
    """

    code: int
    name: str
    desc: str
    fields: tuple[Field, ...] = ()
    flags: tuple[Flag, ...] = ()
    length_words: int = dc_field(init=False)
    nbytes: int = dc_field(init=False)
    flag_mask: int = dc_field(init=False)
    word_offsets: tuple[int, ...] = dc_field(init=False)
    struct_format: str = dc_field(init=False)

    def __post_init__(self):
        offsets, word = [], 1
        for f in self.fields:
            offsets.append(word)
            word += f.words
        set_ = partial(object.__setattr__, self)
        set_("length_words", word)
        set_("nbytes", word * WORD_BYTES)
        set_("flag_mask", sum(f.mask for f in self.flags))
        set_("word_offsets", tuple(offsets))
        set_("struct_format", "<I" + "".join(KINDS[f.kind][0] for f in self.fields))

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise IsaError(f"{self.name}: no field {name!r}{_suggest(name, self.field_names)}",
                       op=self.name, field=name)

    def flag(self, name: str) -> Flag:
        for f in self.flags:
            if f.name == name:
                return f
        known = [f.name for f in self.flags]
        raise IsaError(f"{self.name}: no flag {name!r}{_suggest(name, known)} "
                       f"(flags: {', '.join(known) or 'none'})", op=self.name, field=name)

    def header(self, flags: int = 0) -> int:
        """The header word of this opcode with ``flags``."""
        return self.code | self.length_words << LENGTH_SHIFT | flags << FLAGS_SHIFT


def _u32(name, desc, **kw):
    return Field(name, "u32", desc, **kw)


def _u64(name, desc, **kw):
    return Field(name, "u64", desc, **kw)


def _f32(name, desc, **kw):
    return Field(name, "f32", desc, **kw)


def _sram(name, what):
    return Field(name, "u32", f"SRAM byte offset of {what}.", hex=True)


def _dtype(name, desc):
    return Field(name, "u32", desc, enum="DType")


_CORE_MASK = "Bit i selects core i (global core id, board-file order); bits at or above " \
             "the board's core count are refused (BAD_CORE)."
_SEM = "Semaphore index (cp.SEM[sem], shared by every queue and core)."

# ------------------------------------------------------------------------------------------
# THE TABLE. Codes are final once software ships against them: append, never renumber.

#: Command packets, executed in order by a command-processor queue. A packet completes before
#: the next one starts; LAUNCH completes once its programs have *started*.
PACKET_TABLE: tuple[OpSpec, ...] = (
    OpSpec(0x80, "NOP", "Do nothing; completes at once (padding).", ()),
    OpSpec(0x81, "LAUNCH", "Start the program at `program` on every core in `core_mask`; a core "
           "still running waits to finish first. Completes when every selected core has "
           "started: programs run asynchronously (see WAIT_CORES).", (
               _u64("core_mask", _CORE_MASK, hex=True),
               _u64("program", "HBM byte address of the program's first instruction; "
                    "4-byte aligned.", hex=True),
               _u64("arg", "Opaque argument latched by each launched core (reported in "
                    "traces); no instruction reads it.", hex=True))),
    OpSpec(0x82, "WAIT_CORES", "Block the queue until no core in `core_mask` runs a program "
           "(each has executed END since its last LAUNCH).", (
               _u64("core_mask", "Cores to wait for: bit i = core i.", hex=True),)),
    OpSpec(0x83, "DMA", "2-D strided copy: for r in 0..rows-1, copy `row_bytes` bytes from "
           "src + r·src_stride to dst + r·dst_stride. Completes when the data has landed.", (
               _u64("src", "System byte address of source row 0 (HBM or a core's SRAM "
                    "aperture).", hex=True),
               _u64("dst", "System byte address of destination row 0 (HBM or a core's SRAM "
                    "aperture).", hex=True),
               _u32("row_bytes", "Bytes per row."),
               _u32("rows", "Number of rows (1 for a linear copy)."),
               _u32("src_stride", "Bytes from the start of one source row to the next."),
               _u32("dst_stride", "Bytes from the start of one destination row to the next."))),
    OpSpec(0x84, "SEM_SIGNAL", "Add `value` to semaphore `sem` (modulo 2^32).", (
        _u32("sem", _SEM), _u32("value", "Amount added."))),
    OpSpec(0x85, "SEM_WAIT", "Block the queue until semaphore `sem` ≥ `value`, then subtract "
           "`value`.", (
               _u32("sem", _SEM), _u32("value", "Amount required, then taken."))),
    OpSpec(0x86, "FENCE", "Write `value` to the queue's fence register cp.FENCE[n]; every "
           "earlier packet of the queue has completed.", (
               _u32("value", "Fence value to publish (e.g. a submission sequence number)."),),
           (Flag("irq", 0, "Raise the CP_FENCE interrupt after writing the fence value."),)),
    OpSpec(0x87, "TIMESTAMP", "Write the current simulated time in ns, as a little-endian "
           "u64, to HBM.", (
               _u64("address", "HBM byte address of the 8-byte slot written.", hex=True),)),
    OpSpec(0x88, "IRQ", "Latch interrupt sources into irq.INT_STATUS, as a host write of the "
           "same bits to irq.INT_SET would.", (
               _u32("bits", "Interrupt source bits (irq block bit positions).", hex=True),)),
)

_ROWS = "Rows (independent vectors)."
_COLS = "Elements per row."
_N = "Number of elements."

#: Core instructions, executed in order by one core from its program in HBM. SRAM operands are
#: byte offsets in the core's own SRAM; vector operands are fp32 (ACCUMULATOR_DTYPE).
INSTRUCTION_TABLE: tuple[OpSpec, ...] = (
    # -- data movement 0x01..0x0F
    OpSpec(0x01, "LOAD", "2-D strided copy HBM → SRAM: for r in 0..rows-1, copy `row_bytes` "
           "bytes from hbm + r·hbm_stride to sram + r·sram_stride.", (
               _u64("hbm", "HBM byte address of row 0.", hex=True),
               _sram("sram", "row 0"),
               _u32("row_bytes", "Bytes per row."),
               _u32("rows", "Number of rows."),
               _u32("hbm_stride", "Bytes between consecutive rows in HBM."),
               _u32("sram_stride", "Bytes between consecutive rows in SRAM."))),
    OpSpec(0x02, "STORE", "2-D strided copy SRAM → HBM: for r in 0..rows-1, copy `row_bytes` "
           "bytes from sram + r·sram_stride to hbm + r·hbm_stride.", (
               _u64("hbm", "HBM byte address of row 0.", hex=True),
               _sram("sram", "row 0"),
               _u32("row_bytes", "Bytes per row."),
               _u32("rows", "Number of rows."),
               _u32("hbm_stride", "Bytes between consecutive rows in HBM."),
               _u32("sram_stride", "Bytes between consecutive rows in SRAM."))),
    OpSpec(0x03, "SEND", "Send `bytes` bytes from SRAM over the NoC to core `core`, into the "
           "buffer of its RECV with the same source and tag; completes when delivered.", (
               _u32("core", "Destination core id."),
               _sram("sram", "the data sent"),
               _u32("bytes", "Bytes sent; must equal the matching RECV's `bytes`."),
               _u32("tag", "Message tag; pairs this SEND with one RECV."))),
    OpSpec(0x04, "RECV", "Block until the SEND from core `core` with tag `tag` has delivered "
           "its bytes into SRAM.", (
               _u32("core", "Source core id."),
               _sram("sram", "the receive buffer"),
               _u32("bytes", "Bytes expected."),
               _u32("tag", "Message tag; pairs this RECV with one SEND."))),
    # -- matrix unit 0x10..0x1F
    OpSpec(0x10, "GEMM", "C = A·B on the matrix unit, fp32 accumulation and fp32 C; A, B "
           "row-major. int8 B is weight-only quantised: column j is scaled by scale[j].", (
               _u32("m", "Rows of A and C."),
               _u32("n", "Columns of B and C."),
               _u32("k", "Columns of A = rows of B (the reduction)."),
               _sram("a", "A: m×k elements of dtype_a (k×m with trans_a)"),
               _sram("b", "B: k×n elements of dtype_b (n×k with trans_b)"),
               _sram("c", "C: m×n fp32"),
               _sram("scale", "n fp32 per-column scales of B, read only when dtype_b is "
                     "INT8"),
               _dtype("dtype_a", "Element type of A (DType code)."),
               _dtype("dtype_b", "Element type of B (DType code)."),
           ), (
               Flag("accumulate", 0, "C += A·B instead of C = A·B."),
               Flag("trans_a", 1, "A is stored transposed (k×m)."),
               Flag("trans_b", 2, "B is stored transposed (n×k)."))),
    # -- vector unit 0x20..0x2F (fp32)
    OpSpec(0x20, "ADD", "out[i] = a[i] + b[i], fp32 elementwise.", (
        _u32("n", _N), _sram("a", "n fp32"), _sram("b", "n fp32"), _sram("out", "n fp32"))),
    OpSpec(0x21, "MUL", "out[i] = a[i] · b[i], fp32 elementwise.", (
        _u32("n", _N), _sram("a", "n fp32"), _sram("b", "n fp32"), _sram("out", "n fp32"))),
    OpSpec(0x22, "SCALE", "out[i] = a[i] · factor, fp32 elementwise.", (
        _u32("n", _N), _sram("a", "n fp32"), _sram("out", "n fp32"),
        _f32("factor", "Multiplier."))),
    OpSpec(0x23, "GELU", "out[i] = gelu(a[i]), fp32 (definition: vp.spec.numerics).", (
        _u32("n", _N), _sram("a", "n fp32"), _sram("out", "n fp32"))),
    OpSpec(0x24, "SILU", "out[i] = a[i] · sigmoid(a[i]), fp32.", (
        _u32("n", _N), _sram("a", "n fp32"), _sram("out", "n fp32"))),
    OpSpec(0x2B, "GELU_ERF", "out[i] = exact (erf) gelu(a[i]), fp32, as BERT uses "
           "(definition: vp.spec.numerics.gelu_erf).", (
               _u32("n", _N), _sram("a", "n fp32"), _sram("out", "n fp32"))),
    OpSpec(0x25, "SOFTMAX", "Row-wise softmax of scale·a, fp32; with `causal`, column c of "
           "row r is masked (probability 0) when c > pos0 + r.", (
               _u32("rows", _ROWS), _u32("cols", _COLS),
               _sram("a", "rows×cols fp32 scores"), _sram("out", "rows×cols fp32"),
               _f32("scale", "Multiplies the inputs first (e.g. 1/√head_dim)."),
               _u32("pos0", "Causal mask: position of row 0 (row r sees columns ≤ pos0 + r)."),
           ), (Flag("causal", 0, "Apply the causal mask."),)),
    OpSpec(0x26, "LAYERNORM", "Per row: out = (a − mean) / √(var + eps) · gamma + beta, fp32.", (
        _u32("rows", _ROWS), _u32("cols", _COLS), _sram("a", "rows×cols fp32"),
        _sram("gamma", "cols fp32 gains"), _sram("beta", "cols fp32 biases"),
        _sram("out", "rows×cols fp32"), _f32("eps", "Added to the variance."))),
    OpSpec(0x27, "RMSNORM", "Per row: out = a / √(mean(a²) + eps) · gamma, fp32.", (
        _u32("rows", _ROWS), _u32("cols", _COLS), _sram("a", "rows×cols fp32"),
        _sram("gamma", "cols fp32 gains"), _sram("out", "rows×cols fp32"),
        _f32("eps", "Added to the mean square."))),
    OpSpec(0x28, "ROPE", "Rotary position embedding of each head of each row at that row's "
           "position, fp32 (pairing and frequencies: vp.spec.numerics).", (
               _u32("rows", "Rows (tokens)."), _u32("heads", "Heads per row."),
               _u32("head_dim", "Elements per head (even)."),
               _sram("a", "rows×heads×head_dim fp32"), _sram("out", "rows×heads×head_dim fp32"),
               _sram("positions", "rows int32 token positions"),
               _f32("theta", "Frequency base (e.g. 10000.0)."))),
    OpSpec(0x29, "EMBED", "Gather HBM → SRAM: output row i is the `row_bytes` bytes at "
           "table + ids[i]·row_bytes.", (
               _u32("n", "Number of ids (output rows)."),
               _sram("ids", "n int32 row indices"),
               _u64("table", "HBM byte address of table row 0.", hex=True),
               _u32("row_bytes", "Bytes per table row and per output row."),
               _sram("out", "n rows of row_bytes bytes"))),
    OpSpec(0x2A, "CONVERT", "Convert n elements from from_dtype to to_dtype (rounding: "
           "vp.spec.numerics). To INT8: q = round(x / scale); from INT8: x = q · scale.", (
               _u32("n", _N), _sram("a", "n elements of from_dtype"),
               _sram("out", "n elements of to_dtype"),
               _dtype("from_dtype", "Source element type (DType code)."),
               _dtype("to_dtype", "Destination element type (DType code)."),
               _f32("scale", "Quantisation scale, used when either side is INT8."))),
    # -- synchronisation and control 0x30..0x3F
    OpSpec(0x30, "SEM_SIGNAL", "Add `value` to semaphore `sem` (modulo 2^32).", (
        _u32("sem", _SEM), _u32("value", "Amount added."))),
    OpSpec(0x31, "SEM_WAIT", "Block the core until semaphore `sem` ≥ `value`, then subtract "
           "`value`.", (
               _u32("sem", _SEM), _u32("value", "Amount required, then taken."))),
    OpSpec(0x32, "BARRIER", "Block until every core in `core_mask` has reached a BARRIER with "
           "the same mask.", (
               _u64("core_mask", "Cores taking part (bit i = core i; includes this core).",
                    hex=True),)),
    OpSpec(0x3F, "END", "The program is finished: the core becomes idle (WAIT_CORES sees "
           "it).", ()),
)

# ------------------------------------------------------------------------------------------
# Decoded entries


class Decoded(tuple):
    """A decoded entry: a tuple ``(header, field0, field1, ...)`` with names.

    Per-opcode subclasses (built from the table) add one attribute per field (``d.m``) and per
    flag (``d.accumulate`` -> bool). Class attributes: ``spec`` (:class:`OpSpec`), ``op``
    (name), ``opcode``, ``length_words``, ``nbytes``, ``fmt`` (format name). ``d.fields``
    builds a dict (attribute access is the cheap path).
    """

    __slots__ = ()
    spec: OpSpec
    op: str
    opcode: int
    length_words: int
    nbytes: int
    fmt: str
    _names: tuple[str, ...] = ()

    @property
    def header(self) -> int:
        return self[0]

    @property
    def flags(self) -> int:
        """The header's flag bits [31:16], as an int."""
        return self[0] >> FLAGS_SHIFT

    @property
    def fields(self) -> dict[str, int | float]:
        """Field name -> value (a fresh dict)."""
        return dict(zip(self._names, self[1:]))

    def flag(self, name: str) -> bool:
        """Whether flag ``name`` is set (IsaError for a flag the opcode does not have)."""
        return bool(self[0] >> FLAGS_SHIFT & self.spec.flag(name).mask)

    @property
    def flag_names(self) -> tuple[str, ...]:
        """Names of the flags that are set."""
        return tuple(f.name for f in self.spec.flags if self[0] >> FLAGS_SHIFT & f.mask)

    def to_bytes(self) -> bytes:
        """The entry's encoding (what was decoded)."""
        return struct.pack(self.spec.struct_format, *self)

    def __repr__(self) -> str:
        return f"<{self.fmt} {format_entry(self)}>"

    def __reduce__(self):
        return (_rebuild, (self.fmt, tuple(self)))


def _rebuild(fmt: str, values: tuple) -> Decoded:
    return FORMATS[fmt].cls(values[0] & OPCODE_MASK)(values)


# Attribute names that Decoded reserves: no field or flag may use them.
RESERVED_NAMES = frozenset({"header", "flags", "fields", "flag", "flag_names", "spec", "op",
                            "opcode", "length_words", "nbytes", "fmt", "to_bytes", "count",
                            "index", "cls"})


def _validate(fmt: str, spec: OpSpec) -> None:
    """Table invariants, checked at import: a broken row never ships."""
    where = f"{fmt} {spec.name}"
    if not spec.name.isidentifier() or not 0 < spec.code <= OPCODE_MASK:
        raise ValueError(f"{where}: bad name or opcode 0x{spec.code:X}")
    if spec.length_words > MAX_LENGTH_WORDS:
        raise ValueError(f"{where}: {spec.length_words} words do not fit length_words")
    names = [f.name for f in spec.fields] + [f.name for f in spec.flags]
    for n in names:
        if not n.isidentifier() or keyword.iskeyword(n) or n.startswith("_") \
                or n in RESERVED_NAMES:
            raise ValueError(f"{where}: field/flag name {n!r} is not allowed")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: duplicate field/flag names")
    for f in spec.fields:
        if f.kind not in KINDS or not f.desc or (f.enum is not None and f.enum not in ENUMS):
            raise ValueError(f"{where}.{f.name}: bad kind, enum or empty description")
    bits = [f.bit for f in spec.flags]
    if len(set(bits)) != len(bits) or not all(0 <= b < FLAG_BITS for b in bits):
        raise ValueError(f"{where}: flag bits must be distinct and in 0..{FLAG_BITS - 1}")


def _flag_property(mask: int) -> property:
    return property(lambda self: bool(self[0] >> FLAGS_SHIFT & mask))


def _field_property(i: int) -> property:
    return property(operator.itemgetter(i))


def _entry_class(fmt: str, spec: OpSpec) -> type:
    ns = {"__slots__": (), "spec": spec, "op": spec.name, "opcode": spec.code,
          "length_words": spec.length_words, "nbytes": spec.nbytes, "fmt": fmt,
          "_names": spec.field_names}
    for i, f in enumerate(spec.fields, 1):
        ns[f.name] = _field_property(i)
    for fl in spec.flags:
        ns[fl.name] = _flag_property(fl.mask)
    return type(f"{fmt.title()}_{spec.name}", (Decoded,), ns)


# ------------------------------------------------------------------------------------------
# Encoding checks


def _check_value(fmt: str, spec: OpSpec, f: Field, value):
    where = f"{fmt} {spec.name}: field {f.name!r}"
    if f.enum is not None:
        enum = ENUMS[f.enum]
        try:
            if isinstance(value, str):
                return int(enum[value])
            if isinstance(value, bool):
                raise TypeError
            return int(enum(operator.index(value)))
        except (KeyError, ValueError, TypeError):
            raise IsaError(f"{where} = {value!r} is not a {f.enum} "
                           f"({', '.join(f'{m.name}={m.value}' for m in enum)})",
                           op=spec.name, field=f.name, value=value) from None
    if f.kind == "f32":
        if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float,
                                                                           np.number)):
            raise IsaError(f"{where} = {value!r}: expected a number (f32)", op=spec.name,
                           field=f.name, value=value)
        x = float(value)
        if math.isfinite(x) and abs(x) > _F32_MAX:
            try:
                struct.pack("<f", x)          # rounds down to FLT_MAX when close enough
            except OverflowError:
                raise IsaError(f"{where} = {value!r} out of range for f32 "
                               f"[-{_F32_MAX:.8g}, {_F32_MAX:.8g}]", op=spec.name,
                               field=f.name, value=value) from None
        return x
    lo, hi = KINDS[f.kind][2]
    if isinstance(value, bool):
        raise IsaError(f"{where} = {value!r}: expected an integer ({f.kind})", op=spec.name,
                       field=f.name, value=value)
    try:
        v = operator.index(value)
    except TypeError:
        raise IsaError(f"{where} = {value!r}: expected an integer ({f.kind})", op=spec.name,
                       field=f.name, value=value) from None
    if not lo <= v <= hi:
        raise IsaError(f"{where} = {v} (0x{v & (1 << 64) - 1:x}) out of range for {f.kind} "
                       f"[{lo}, {hi}]", op=spec.name, field=f.name, value=v)
    return v


# ------------------------------------------------------------------------------------------
# Formats


class _Entry:
    """Per-opcode compiled data: the spec, its decoded class and packer."""

    __slots__ = ("spec", "cls", "unpack", "pack", "check_mask", "check_value",
                 "flag_masks", "field_index", "fast")

    def __init__(self, fmt: str, spec: OpSpec):
        self.spec = spec
        self.cls = _entry_class(fmt, spec)
        st = struct.Struct(spec.struct_format)
        self.unpack, self.pack = st.unpack_from, st.pack
        # header & check_mask == check_value  <=>  right length and no undefined flag bit
        self.check_mask = LENGTH_MASK << LENGTH_SHIFT | \
            (~spec.flag_mask & FLAGS_MASK) << FLAGS_SHIFT
        self.check_value = spec.length_words << LENGTH_SHIFT
        self.flag_masks = {f.name: f.mask for f in spec.flags}
        self.field_index = {f.name: f for f in spec.fields}
        # encoder fast path: (name, type accepted as is, lo, hi); anything else is checked
        # (and converted) by _check_value
        self.fast = tuple(
            _enum_fast(f) if f.enum is not None else
            (f.name, float, -_F32_MAX, _F32_MAX) if f.kind == "f32" else
            (f.name, int, *KINDS[f.kind][2]) for f in spec.fields)


_HEADER = struct.Struct("<I")


def _enum_fast(f: Field) -> tuple:
    values = sorted(int(m) for m in ENUMS[f.enum])
    if values == list(range(values[0], values[-1] + 1)):     # contiguous: a range check
        return (f.name, int, values[0], values[-1])
    return (f.name, None, 0, 0)


class Format:
    """One binary format: its opcodes, encoder, decoder and disassembler.

    ``fmt[name]`` / ``fmt.op(name_or_code)`` give an :class:`OpSpec`; iteration yields them in
    table order; ``fmt.by_code`` maps opcode -> spec.
    """

    def __init__(self, name: str, title: str, ops: Iterable[OpSpec],
                 codes: range = range(1, 256)):
        self.name, self.title, self.codes = name, title, codes
        self.ops: tuple[OpSpec, ...] = tuple(ops)
        self.by_name: dict[str, OpSpec] = {}
        self.by_code: dict[int, OpSpec] = {}
        self._entries: dict[str | int, _Entry] = {}     # by name and by code
        for spec in self.ops:
            _validate(name, spec)
            if spec.code not in codes:
                raise ValueError(f"{name} {spec.name}: opcode 0x{spec.code:02X} outside "
                                 f"0x{codes.start:02X}..0x{codes.stop - 1:02X}")
            if spec.name in self.by_name or spec.code in self.by_code:
                raise ValueError(f"{name}: duplicate opcode {spec.name} / 0x{spec.code:02X}")
            entry = _Entry(name, spec)
            self.by_name[spec.name] = self.by_code[spec.code] = spec
            self._entries[spec.name] = self._entries[spec.code] = entry
        self.decode = _make_decoder(self)

    def __repr__(self) -> str:
        return f"<isa.Format {self.name}: {len(self.ops)} opcodes>"

    def __iter__(self) -> Iterator[OpSpec]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def __getitem__(self, name: str) -> OpSpec:
        return self.op(name)

    def __contains__(self, name) -> bool:
        return name in self.by_name

    def op(self, op: str | int) -> OpSpec:
        """The opcode called ``op`` (a name, or a numeric code)."""
        return self._entry(op).spec

    def cls(self, op: str | int) -> type:
        """The :class:`Decoded` subclass of opcode ``op``."""
        return self._entry(op).cls

    def _entry(self, op) -> _Entry:
        try:
            return self._entries[op]
        except (KeyError, TypeError):
            if isinstance(op, str):
                raise IsaError(f"unknown {self.name} {op!r}{_suggest(op, self.by_name)}; "
                               f"{self.name}s: {', '.join(self.by_name)}", op=op) from None
            raise IsaError(f"unknown {self.name} opcode {op!r}", op=str(op)) from None

    # -- encoder ---------------------------------------------------------------------------
    def encode(self, op: str, flags: int | Iterable[str] | Mapping[str, bool] | None = None,
               **fields) -> bytes:
        """Encode one entry. ``fields`` holds every field of ``op`` by name, and optionally
        flags by name (``irq=True``); ``flags`` gives flag bits as an int, a list of names or
        a dict name -> bool.
        Raises :class:`IsaError` for an unknown op, field or flag, a missing field, or a value
        out of range for its kind."""
        e = self._entry(op)
        spec = e.spec
        bits = self._flag_bits(e, flags)
        for name in [n for n in fields if n not in e.field_index]:
            value = fields.pop(name)
            mask = e.flag_masks.get(name)
            if mask is None:
                known = list(e.field_index) + list(e.flag_masks)
                raise IsaError(
                    f"{self.name} {spec.name}: unknown field {name!r}{_suggest(name, known)}; "
                    f"fields: {', '.join(e.field_index) or 'none'}"
                    f"; flags: {', '.join(e.flag_masks) or 'none'}", op=spec.name, field=name,
                    value=value)
            if value not in (True, False, 0, 1) or isinstance(value, str):
                raise IsaError(f"{self.name} {spec.name}: flag {name!r} = {value!r}: expected "
                               "a bool", op=spec.name, field=name, value=value)
            bits = bits | mask if value else bits & ~mask
        missing = [f.name for f in spec.fields if f.name not in fields]
        if missing:
            raise IsaError(f"{self.name} {spec.name}: missing field(s) {', '.join(missing)} "
                           f"(fields: {', '.join(spec.field_names)})", op=spec.name,
                           field=missing[0])
        values = [spec.header(bits)]
        for f, (name, typ, lo, hi) in zip(spec.fields, e.fast):
            v = fields[name]
            if v.__class__ is not typ or not lo <= v <= hi:
                v = _check_value(self.name, spec, f, v)
            values.append(v)
        return e.pack(*values)

    def _flag_bits(self, e: _Entry, flags) -> int:
        if flags is None:
            return 0
        spec = e.spec
        if isinstance(flags, str):
            flags = [flags]
        elif isinstance(flags, Mapping):        # {"irq": True, ...}
            for name, on in flags.items():
                spec.flag(name)
                if on not in (True, False, 0, 1) or isinstance(on, str):
                    raise IsaError(f"{self.name} {spec.name}: flag {name!r} = {on!r}: "
                                   "expected a bool", op=spec.name, field=name, value=on)
            flags = [name for name, on in flags.items() if on]
        if isinstance(flags, bool) or not isinstance(flags, (int, np.integer)):
            return sum(spec.flag(name).mask for name in set(flags))
        bits = int(flags)
        if bits & ~spec.flag_mask or bits < 0:
            raise IsaError(f"{self.name} {spec.name}: flags 0x{bits:x} set undefined bits "
                           f"(defined mask 0x{spec.flag_mask:x}: "
                           f"{', '.join(f'{f.name}=bit{f.bit}' for f in spec.flags) or 'none'})",
                           op=spec.name, field="flags", value=bits)
        return bits

    # -- stream decoding and listings --------------------------------------------------------
    def decode_stream(self, buf, offset: int = 0, end: int | None = None,
                      stop: str | None = None) -> Iterator[Decoded]:
        """Decode consecutive entries from byte ``offset`` up to byte ``end`` (default: the end
        of ``buf``). An entry crossing ``end`` is ``MALFORMED_PACKET``. With ``stop`` (an op
        name, e.g. ``"END"``), stop after yielding that op."""
        decode = self.decode
        if end is None:
            end = memoryview(buf).nbytes
        while offset < end:
            if offset + WORD_BYTES > end:
                raise DecodeError(MALFORMED_PACKET, f"{self.name} at offset 0x{offset:x}: "
                                  f"{end - offset} byte(s) left before the end 0x{end:x}, "
                                  "not a whole header", offset)
            d = decode(buf, offset)
            if offset + d.nbytes > end:
                raise DecodeError(MALFORMED_PACKET, f"{self.name} at offset 0x{offset:x}: "
                                  f"opcode 0x{d.opcode:02X} ({d.op}) needs {d.length_words} "
                                  f"words and crosses the end 0x{end:x}", offset, d.opcode,
                                  d.header, d.op)
            yield d
            if d.op == stop:
                return
            offset += d.nbytes

    def disassemble(self, buf, offset: int = 0, end: int | None = None, base: int = 0,
                    words: bool = False) -> str:
        """A listing, one line per entry: ``0x<base+offset>: OP[.flag...] field=value ...``.
        With ``words``, the raw words follow as a comment. A bad entry ends the listing with a
        ``.word`` line naming the error."""
        lines = []
        try:
            for d in self.decode_stream(buf, offset, end):
                line = f"0x{base + offset:04X}: {format_entry(d)}"
                if words:
                    line += "  ; " + " ".join(f"{w:08X}" for w in _words(d.to_bytes()))
                lines.append(line)
                offset += d.nbytes
        except DecodeError as exc:
            raw = _byte_view(buf)[exc.offset:exc.offset + WORD_BYTES].tobytes()
            word = f".word 0x{int.from_bytes(raw, 'little'):08X}" if len(raw) == 4 else ".byte"
            lines.append(f"0x{base + exc.offset:04X}: {word}  ; {exc}")
        return "\n".join(lines) + ("\n" if lines else "")


def _byte_view(buf) -> memoryview:
    """A flat byte memoryview of any contiguous buffer."""
    if isinstance(buf, np.ndarray):
        return memoryview(np.ascontiguousarray(buf).reshape(-1).view(np.uint8))
    mv = memoryview(buf)
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")


def _words(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(data) // WORD_BYTES}I", data)


def _format_value(f: Field, v) -> str:
    if f.kind == "f32":
        return str(np.float32(v))
    if f.enum is not None:
        try:
            return ENUMS[f.enum](v).name
        except ValueError:
            return str(v)
    return f"0x{v:X}" if f.hex else str(v)


def format_entry(d: Decoded) -> str:
    """``OP[.flag...] field=value ...`` (the disassembler's text of one entry)."""
    head = ".".join((d.op,) + d.flag_names)
    args = " ".join(f"{f.name}={_format_value(f, v)}" for f, v in zip(d.spec.fields, d[1:]))
    return f"{head} {args}" if args else head


def _make_decoder(fmt: Format):
    """Build ``fmt``'s decoder: a closure over a 256-slot table, one header unpack, one check
    of length and flags, one precompiled unpack of the whole entry."""
    table: list = [None] * 256
    for spec in fmt.ops:
        e = fmt._entries[spec.code]
        table[spec.code] = (e.check_mask, e.check_value, e.unpack, e.cls)
    unpack_header = _HEADER.unpack_from
    new = tuple.__new__
    fail = partial(_diagnose, fmt)

    def decode(buf, offset: int = 0) -> Decoded:
        """Decode the entry at byte ``offset`` of ``buf`` (bytes, bytearray, memoryview or a
        C-contiguous numpy array). Raises :class:`DecodeError`."""
        try:
            header = unpack_header(buf, offset)[0]
            mask, value, unpack, cls = table[header & 0xFF]
            if header & mask == value and not offset & 3 and offset >= 0:
                return new(cls, unpack(buf, offset))
        except (struct.error, TypeError):
            pass
        raise fail(buf, offset)

    decode.__qualname__ = f"Format.decode[{fmt.name}]"
    return decode


def _diagnose(fmt: Format, buf, offset: int) -> Exception:
    """The DecodeError explaining why the entry at ``offset`` did not decode (slow path)."""
    size = memoryview(buf).nbytes    # TypeError here for a non-buffer: a caller bug
    what = f"{fmt.name} at offset 0x{offset:x}" if offset >= 0 else f"{fmt.name} at offset {offset}"
    if offset < 0 or offset + WORD_BYTES > size:
        return DecodeError(MALFORMED_PACKET, f"{what}: header beyond the end of the "
                           f"{size}-byte buffer", offset)
    if offset % WORD_BYTES:
        return DecodeError(MISALIGNED, f"{what}: entries are {WORD_BYTES}-byte aligned",
                           offset)
    header = _HEADER.unpack_from(buf, offset)[0]
    code = header & OPCODE_MASK
    length = header >> LENGTH_SHIFT & LENGTH_MASK
    flags = header >> FLAGS_SHIFT
    spec = fmt.by_code.get(code)
    if spec is None:
        codes = ", ".join(f"0x{c:02X}" for c in fmt.by_code)
        return DecodeError(BAD_OPCODE, f"{what}: unknown opcode 0x{code:02X} (header "
                           f"0x{header:08X}); {fmt.name} opcodes are {codes}", offset, code,
                           header)
    head = f"{what}: opcode 0x{code:02X} ({spec.name})"
    if length != spec.length_words:
        return DecodeError(MALFORMED_PACKET, f"{head} has length_words {length}, expected "
                           f"{spec.length_words} (header 0x{header:08X})", offset, code, header,
                           spec.name)
    if flags & ~spec.flag_mask:
        return DecodeError(MALFORMED_PACKET, f"{head} sets undefined flag bits "
                           f"0x{flags & ~spec.flag_mask:04X}, defined mask "
                           f"0x{spec.flag_mask:04X} (header 0x{header:08X})", offset, code,
                           header, spec.name)
    if offset + spec.nbytes > size:
        return DecodeError(MALFORMED_PACKET, f"{head} needs {spec.nbytes} bytes but the buffer "
                           f"ends {size - offset} bytes after it", offset, code, header,
                           spec.name)
    raise AssertionError(f"{head}: header 0x{header:08X} valid but decode failed")


#: Command packets (command-processor rings).
PACKETS = Format("packet", "Command packets", PACKET_TABLE, range(0x80, 0x100))
#: Core instructions (programs).
INSTRUCTIONS = Format("instruction", "Core instructions", INSTRUCTION_TABLE, range(0x01, 0x80))

#: Format lookup: by object or name ("packet", "packets", "instruction", "instructions").
FORMATS: dict = {}
for _f in (PACKETS, INSTRUCTIONS):
    FORMATS.update({_f: _f, _f.name: _f, _f.name + "s": _f})
_DECODERS = {k: f.decode for k, f in FORMATS.items()}


def get_format(fmt) -> Format:
    """``fmt`` as a :class:`Format` (accepts the object or its name)."""
    try:
        return FORMATS[fmt]
    except (KeyError, TypeError):
        raise IsaError(f"unknown format {fmt!r} (expected PACKETS, INSTRUCTIONS, 'packet' or "
                       "'instruction')") from None


# ------------------------------------------------------------------------------------------
# Module-level API


def opcode_name(fmt, code: int) -> str | None:
    """Name of opcode ``code`` in format ``fmt``, or None if the format has no such opcode."""
    spec = get_format(fmt).by_code.get(code)
    return spec.name if spec is not None else None


def encode(fmt, op: str, flags: int | Iterable[str] | None = None, **fields) -> bytes:
    """Encode one entry of format ``fmt`` (see :meth:`Format.encode`)."""
    return get_format(fmt).encode(op, flags, **fields)


def encode_packet(op: str, flags: int | Iterable[str] | None = None, **fields) -> bytes:
    """Encode one command packet, e.g. ``encode_packet("FENCE", value=7, irq=True)``."""
    return PACKETS.encode(op, flags, **fields)


def encode_instruction(op: str, flags: int | Iterable[str] | None = None, **fields) -> bytes:
    """Encode one core instruction, e.g. ``encode_instruction("END")``."""
    return INSTRUCTIONS.encode(op, flags, **fields)


def decode(fmt, buf, offset: int = 0) -> Decoded:
    """Decode the entry of format ``fmt`` at byte ``offset`` of ``buf``.

    Raises :class:`DecodeError` with ``cause`` ``BAD_OPCODE`` (unknown opcode),
    ``MALFORMED_PACKET`` (length_words not the table's, undefined flag bits set, or the entry
    runs past the buffer) or ``MISALIGNED`` (offset not a multiple of 4). For the hot path,
    call ``PACKETS.decode`` / ``INSTRUCTIONS.decode`` directly (one lookup less).
    """
    try:
        dec = _DECODERS[fmt]
    except (KeyError, TypeError):
        get_format(fmt)
        raise
    return dec(buf, offset)


def decode_stream(fmt, buf, offset: int = 0, end: int | None = None,
                  stop: str | None = None) -> Iterator[Decoded]:
    """Iterate over the consecutive entries in ``buf[offset:end]`` (see
    :meth:`Format.decode_stream`)."""
    return get_format(fmt).decode_stream(buf, offset, end, stop)


def disassemble(fmt, buf, offset: int = 0, end: int | None = None, base: int = 0,
                words: bool = False) -> str:
    """A readable listing of the entries in ``buf`` (see :meth:`Format.disassemble`)."""
    return get_format(fmt).disassemble(buf, offset, end, base, words)


def hexdump(data: bytes, base: int = 0, per_line: int = 4) -> str:
    """``data`` as little-endian words, ``per_line`` per line, each line prefixed by its
    address (``base`` + offset)."""
    w = _words(bytes(data))
    return "".join(f"0x{base + i * WORD_BYTES:04X}: "
                   + " ".join(f"{x:08X}" for x in w[i:i + per_line]) + "\n"
                   for i in range(0, len(w), per_line))


class Program:
    """Builds a sequence of entries (a core program by default, or a packet stream).

    ``p.append("GEMM", m=..., accumulate=True)`` or ``p.GEMM(m=..., ...)`` encodes one entry
    and returns its byte offset in the program. ``to_bytes()`` / ``to_words()`` give the binary,
    ``disassemble()`` the listing; iterating decodes the entries back.
    """

    def __init__(self, fmt=INSTRUCTIONS):
        self.fmt = get_format(fmt)
        self._parts: list[bytes] = []
        self._nbytes = 0
        self._count = 0

    def append(self, op: str, flags: int | Iterable[str] | None = None, **fields) -> int:
        """Encode and append one entry; returns its byte offset."""
        data = self.fmt.encode(op, flags, **fields)
        offset = self._nbytes
        self._parts.append(data)
        self._nbytes += len(data)
        self._count += 1
        return offset

    def extend(self, other: "Program | bytes") -> int:
        """Append another program of the same format (or encoded bytes, checked by decoding);
        returns the byte offset where it starts."""
        data = other.to_bytes() if isinstance(other, Program) else bytes(other)
        if isinstance(other, Program) and other.fmt is not self.fmt:
            raise IsaError(f"cannot extend a {self.fmt.name} program with a "
                           f"{other.fmt.name} program")
        count = sum(1 for _ in self.fmt.decode_stream(data))
        offset = self._nbytes
        self._parts.append(data)
        self._nbytes += len(data)
        self._count += count
        return offset

    def __getattr__(self, name: str):
        fmt = self.__dict__.get("fmt")
        if fmt is not None and name in fmt.by_name:
            return partial(self.append, name)
        raise AttributeError(name)

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def to_bytes(self) -> bytes:
        return b"".join(self._parts)

    def to_words(self) -> np.ndarray:
        """The program as a little-endian uint32 array."""
        return np.frombuffer(self.to_bytes(), dtype="<u4").copy()

    def __iter__(self) -> Iterator[Decoded]:
        return self.fmt.decode_stream(self.to_bytes())

    def disassemble(self, base: int = 0, words: bool = False) -> str:
        """The listing, addresses from ``base`` (e.g. the program's HBM address)."""
        return self.fmt.disassemble(self.to_bytes(), base=base, words=words)

    def __repr__(self) -> str:
        return f"<isa.Program {self.fmt.name}s: {len(self)} entries, {self._nbytes} bytes>"


__all__ = [
    "WORD_BYTES", "OPCODE_SHIFT", "OPCODE_MASK", "LENGTH_SHIFT", "LENGTH_MASK", "FLAGS_SHIFT",
    "FLAGS_MASK", "MAX_LENGTH_WORDS", "FLAG_BITS", "MAX_CORES", "INDEX_DTYPE",
    "ACCUMULATOR_DTYPE", "TIMESTAMP_UNIT_PS", "TIMESTAMP_BYTES", "BAD_OPCODE",
    "MALFORMED_PACKET", "MISALIGNED", "KINDS", "DType", "DTYPE_DESC", "ENUMS", "IsaError",
    "DecodeError", "Field", "Flag", "OpSpec", "PACKET_TABLE", "INSTRUCTION_TABLE", "Decoded",
    "RESERVED_NAMES", "Format", "PACKETS", "INSTRUCTIONS", "FORMATS", "get_format", "encode",
    "encode_packet", "encode_instruction", "opcode_name", "decode", "decode_stream", "disassemble", "hexdump",
    "format_entry", "Program",
]
