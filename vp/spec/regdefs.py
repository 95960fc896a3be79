"""Plain types describing a compiled register map.

``vp/spec/regmap.py`` is generated from ``vp/spec/npuvp.rdl`` (by ``python -m vp.spec.gen_regmap``)
and builds one :class:`RegMap` out of these types. Device models (``models.regblock``) and the
host driver read offsets, field positions, access types and reset values from it; nothing here
knows about SystemRDL, so importing the register map costs no compiler.

Conventions: addresses and offsets are bytes; registers are 32 bits wide; access types use the
SystemRDL spellings (``sw``/``hw``: ``"r"``, ``"w"``, ``"rw"``, ``"na"``; ``onread``: ``"rclr"``,
``"rset"``, ``"ruser"``; ``onwrite``: ``"woclr"``, ``"woset"``, ``"wot"``, ``"wzs"``, ``"wzc"``,
``"wzt"``, ``"wclr"``, ``"wset"``, ``"wuser"``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field as dc_field
from enum import IntEnum
from typing import Iterator

#: Width of every register in bits.
REG_WIDTH = 32
#: Size of every register in bytes (and the only supported access size).
REG_BYTES = REG_WIDTH // 8
REG_MASK = (1 << REG_WIDTH) - 1

ACCESS_TYPES = frozenset({"r", "w", "rw", "na"})
ONREAD_TYPES = frozenset({"rclr", "rset", "ruser"})
ONWRITE_TYPES = frozenset({"woclr", "woset", "wot", "wzs", "wzc", "wzt", "wclr", "wset", "wuser"})


def _unknown(what: str, name: str, known: list[str], where: str) -> KeyError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
    return KeyError(f"no {what} {name!r} in {where}; {hint}")


class RegEnum(IntEnum):
    """Base of the enumerations generated from the RDL (``ErrCode``, ``ErrSource``…).

    Members are declared as ``NAME = value, "description"``; ``member.desc`` is the data-sheet
    text of the value.
    """

    def __new__(cls, value: int, desc: str = ""):
        obj = int.__new__(cls, value)
        obj._value_ = value
        obj.desc = desc
        return obj


@dataclass(frozen=True, slots=True)
class Field:
    """A bit field of a register.

    Attributes:
        name: field name (e.g. ``"START"``).
        lsb: lowest bit position in the register.
        width: bits.
        sw: software access, ``"r"``, ``"w"``, ``"rw"`` or ``"na"``.
        hw: hardware access, same spellings (informative: device models may always update).
        reset: reset value of the field (not shifted).
        onread: ``None`` or a read side effect (``"rclr"``: the read clears the field).
        onwrite: ``None`` (plain write) or a write side effect (``"woclr"``: write 1 to clear…).
        singlepulse: the field is a pulse: a written 1 acts once and is never stored (reads 0).
        enum: name of the enumeration that encodes the field's values, or ``None``.
        desc: data-sheet description.
    """

    name: str
    lsb: int
    width: int
    sw: str
    hw: str = "na"
    reset: int = 0
    onread: str | None = None
    onwrite: str | None = None
    singlepulse: bool = False
    enum: str | None = None
    desc: str = ""

    def __post_init__(self):
        if self.width < 1 or self.lsb < 0 or self.lsb + self.width > REG_WIDTH:
            raise ValueError(f"field {self.name}: bits [{self.lsb + self.width - 1}:{self.lsb}] "
                             f"do not fit a {REG_WIDTH}-bit register")
        if self.sw not in ACCESS_TYPES or self.hw not in ACCESS_TYPES:
            raise ValueError(f"field {self.name}: bad access sw={self.sw!r} hw={self.hw!r}")
        if self.onread is not None and self.onread not in ONREAD_TYPES:
            raise ValueError(f"field {self.name}: bad onread {self.onread!r}")
        if self.onwrite is not None and self.onwrite not in ONWRITE_TYPES:
            raise ValueError(f"field {self.name}: bad onwrite {self.onwrite!r}")
        if not 0 <= self.reset < (1 << self.width):
            raise ValueError(f"field {self.name}: reset 0x{self.reset:x} does not fit "
                             f"{self.width} bits")

    @property
    def msb(self) -> int:
        """Highest bit position in the register."""
        return self.lsb + self.width - 1

    @property
    def mask(self) -> int:
        """The field's bits within the register."""
        return ((1 << self.width) - 1) << self.lsb

    @property
    def sw_readable(self) -> bool:
        """Software reads see the stored value (singlepulse fields always read 0)."""
        return self.sw in ("r", "rw") and not self.singlepulse

    @property
    def sw_writable(self) -> bool:
        return self.sw in ("w", "rw")

    def extract(self, reg_value: int) -> int:
        """This field's value out of a whole-register value."""
        return (reg_value >> self.lsb) & ((1 << self.width) - 1)

    def insert(self, reg_value: int, field_value: int) -> int:
        """``reg_value`` with this field replaced by ``field_value``.

        Raises:
            ValueError: ``field_value`` is negative or wider than the field.
        """
        if not 0 <= field_value < (1 << self.width):
            raise ValueError(f"value {field_value:#x} does not fit field {self.name} "
                             f"({self.width} bit{'s' if self.width > 1 else ''})")
        return (reg_value & ~self.mask) | (field_value << self.lsb)

    def __str__(self) -> str:
        bits = f"{self.msb}:{self.lsb}" if self.width > 1 else f"{self.lsb}"
        return f"{self.name}[{bits}]"


@dataclass(frozen=True, slots=True)
class Register:
    """A 32-bit register.

    Attributes:
        name: register name within its block; array elements are named ``"DOORBELL[3]"``.
        block: name of the block holding the register.
        offset: byte offset within the block.
        address: byte address within BAR0.
        reset: reset value of the whole register (the fields' resets, shifted into place).
        fields: fields in ascending bit order.
        desc: data-sheet description.
        title: short human-readable name (the RDL ``name`` property).
    """

    name: str
    block: str
    offset: int
    address: int
    reset: int
    fields: tuple[Field, ...]
    desc: str = ""
    title: str = ""

    def __post_init__(self):
        if self.offset % REG_BYTES or self.address % REG_BYTES:
            raise ValueError(f"register {self.full_name}: not {REG_BYTES}-byte aligned")
        used = 0
        reset = 0
        for f in self.fields:
            if used & f.mask:
                raise ValueError(f"register {self.full_name}: field {f.name} overlaps another")
            used |= f.mask
            reset |= f.reset << f.lsb
        if reset != self.reset:
            raise ValueError(f"register {self.full_name}: reset 0x{self.reset:08x} disagrees "
                             f"with its fields (0x{reset:08x})")

    @property
    def full_name(self) -> str:
        """``"block.REG"``, the key of :meth:`RegMap.reg`."""
        return f"{self.block}.{self.name}"

    def field(self, name: str) -> Field:
        """The field called ``name`` (KeyError naming the register's fields when unknown)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise _unknown("field", name, [f.name for f in self.fields], self.full_name)

    @property
    def readable(self) -> bool:
        """At least one field returns its stored value to software reads."""
        return any(f.sw_readable for f in self.fields)

    @property
    def writable(self) -> bool:
        """At least one field is writable by software."""
        return any(f.sw_writable for f in self.fields)

    @property
    def read_only(self) -> bool:
        """No field is writable by software: a write is refused (error READ_ONLY)."""
        return not self.writable

    @property
    def defined_mask(self) -> int:
        """Bits covered by a field; the others are reserved (read 0, writes ignored)."""
        m = 0
        for f in self.fields:
            m |= f.mask
        return m

    def decode(self, value: int) -> dict[str, int]:
        """Field name -> field value for a whole-register ``value``."""
        return {f.name: f.extract(value) for f in self.fields}

    def __str__(self) -> str:
        return f"{self.full_name} @0x{self.address:04x}"


@dataclass(frozen=True)
class Block:
    """A block of registers at ``offset`` in BAR0, ``size`` bytes long (registers' span)."""

    name: str
    offset: int
    size: int
    registers: tuple[Register, ...]
    desc: str = ""
    title: str = ""
    _by_name: dict = dc_field(init=False, repr=False, compare=False)
    _by_offset: dict = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_by_name", {r.name: r for r in self.registers})
        object.__setattr__(self, "_by_offset", {r.offset: r for r in self.registers})
        if len(self._by_name) != len(self.registers):
            raise ValueError(f"block {self.name}: duplicate register names")
        for r in self.registers:
            if r.block != self.name or r.address != self.offset + r.offset:
                raise ValueError(f"register {r.full_name} is inconsistent with block {self.name}")
            if r.offset + REG_BYTES > self.size:
                raise ValueError(f"register {r.full_name} lies beyond block {self.name}")

    def reg(self, name: str) -> Register:
        """The register called ``name`` in this block (e.g. ``"CTRL"``, ``"DOORBELL[3]"``)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise _unknown("register", name, list(self._by_name), f"block {self.name}") from None

    def at(self, offset: int) -> Register | None:
        """The register holding byte ``offset`` of the block, or ``None`` (a hole)."""
        return self._by_offset.get(offset - offset % REG_BYTES)


@dataclass(frozen=True)
class RegMap:
    """A whole register map: ``blocks`` laid out in a BAR of ``size`` bytes."""

    name: str
    size: int
    blocks: tuple[Block, ...]
    desc: str = ""
    title: str = ""
    _blocks: dict = dc_field(init=False, repr=False, compare=False)
    _regs: dict = dc_field(init=False, repr=False, compare=False)
    _by_address: dict = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_blocks", {b.name: b for b in self.blocks})
        object.__setattr__(self, "_regs", {r.full_name: r for b in self.blocks
                                            for r in b.registers})
        by_address: dict[int, Register] = {}
        for r in self._regs.values():
            if r.address in by_address:
                raise ValueError(f"{r.full_name} overlaps {by_address[r.address].full_name}")
            if r.address + REG_BYTES > self.size:
                raise ValueError(f"{r.full_name} lies beyond the {self.size}-byte BAR")
            by_address[r.address] = r
        object.__setattr__(self, "_by_address", by_address)

    def block(self, name: str) -> Block:
        """The block called ``name`` (e.g. ``"dma"``)."""
        try:
            return self._blocks[name]
        except KeyError:
            raise _unknown("block", name, list(self._blocks), self.name) from None

    def reg(self, full_name: str) -> Register:
        """The register called ``"block.REG"`` (e.g. ``"dma.CTRL"``, ``"db.DOORBELL[3]"``).

        Raises:
            KeyError: unknown name; the message lists the closest known names.
        """
        try:
            return self._regs[full_name]
        except KeyError:
            raise _unknown("register", full_name, list(self._regs), self.name) from None

    def at(self, address: int) -> Register | None:
        """The register holding BAR byte ``address``, or ``None`` (reserved or out of range)."""
        return self._by_address.get(address - address % REG_BYTES)

    def registers(self) -> Iterator[Register]:
        """Every register, block by block, in address order within each block."""
        for b in self.blocks:
            yield from b.registers

    def __iter__(self) -> Iterator[Register]:
        return self.registers()

    def __len__(self) -> int:
        return len(self._regs)
