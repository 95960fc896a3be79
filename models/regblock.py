"""A generic register block: the device side of one block of the register map.

A :class:`RegisterBlock` is built from a :class:`vp.spec.regdefs.Block` (e.g.
``REGMAP.block("dma")``) and implements every register of it with the access semantics the RDL
declares, so device models only add behaviour through hooks:

==================  ====================================================================
reset               every register starts at (and :meth:`reset` returns to) its RDL reset
sw=rw               read/write
sw=r                read-only; a write to a register with *no* sw-writable field is refused
                    with ``COMMAND_ERROR``; read-only bits of a mixed register ignore writes
sw=w                write-only: stored (the device sees it) but reads 0
onwrite=woclr       a written 1 clears the bit (write 1 to clear); ``woset`` sets it;
                    ``wot`` toggles; ``wzc``/``wzs``/``wzt`` act on written 0s;
                    ``wclr``/``wset`` clear/set the field on any write
onread=rclr         a read returns the value then clears the field (``rset`` sets it)
singlepulse         never stored, reads 0; the written 1 reaches the write hooks
reserved bits       read 0, writes ignored
==================  ====================================================================

Software accesses arrive as TLM transactions (:meth:`b_transport`, ``trans.address`` is the
byte offset within the block); only aligned 32-bit accesses are accepted. The owning device
model uses the ``hw_*`` methods (no side effects, no hooks) and registers hooks:

- ``on_write(reg, fn)``: ``fn(written_value, old_value)`` after the stored value was updated.
  ``written_value`` is the bus data restricted to the register's sw-writable bits (singlepulse
  bits included); ``old_value`` is the stored value before the write.
- ``on_read(reg, fn)``: ``fn()`` before the value is read, to refresh it with :meth:`hw_write`.

State is a list of 32-bit ints (plain data): :meth:`state` / :meth:`load_state` snapshot it.
"""

from __future__ import annotations

import struct
from typing import Callable

from vp.kernel.payload import Command, Payload, Response
from vp.spec.regdefs import REG_BYTES, REG_MASK, Block, Register

_WORD = struct.Struct("<I")   # registers are little-endian 32-bit words
_READ = Command.READ
_WRITE = Command.WRITE
_OK = Response.OK


class _Reg:
    """Per-register masks, precomputed so an access is a few integer operations."""

    __slots__ = ("index", "reg", "read_mask", "plain_mask", "sw_write_mask", "store_mask",
                 "writable", "onwrite", "woclr", "woset", "wot", "wzc", "wzs", "wzt", "wclr",
                 "wset", "onread", "rclr", "rset")

    def __init__(self, index: int, reg: Register):
        self.index = index
        self.reg = reg

        def mask(pred) -> int:
            m = 0
            for f in reg.fields:
                if pred(f):
                    m |= f.mask
            return m

        self.read_mask = mask(lambda f: f.sw_readable)
        self.sw_write_mask = mask(lambda f: f.sw_writable)
        # Bits that take the written value as is.
        self.plain_mask = mask(lambda f: f.sw_writable and not f.singlepulse
                               and f.onwrite in (None, "wuser"))
        # Bits that hold state (singlepulse bits are never stored).
        self.store_mask = mask(lambda f: not f.singlepulse)
        self.writable = self.sw_write_mask != 0
        for kind in ("woclr", "woset", "wot", "wzc", "wzs", "wzt", "wclr", "wset"):
            setattr(self, kind, mask(lambda f, k=kind: f.sw_writable and not f.singlepulse
                                     and f.onwrite == k))
        self.onwrite = any(getattr(self, k) for k in
                           ("woclr", "woset", "wot", "wzc", "wzs", "wzt", "wclr", "wset"))
        self.rclr = mask(lambda f: f.onread == "rclr")
        self.rset = mask(lambda f: f.onread == "rset")
        self.onread = bool(self.rclr or self.rset)


class RegisterBlock:
    """Registers of one block of the register map, as a TLM target.

    Args:
        block: the block's description, e.g. ``REGMAP.block("dma")``.

    Attributes:
        name: the block's name.
        block: the :class:`~vp.spec.regdefs.Block` it implements.
        size: bytes of address space the block decodes (offsets ``0 .. size-1``).
    """

    def __init__(self, block: Block):
        self.block = block
        self.name = block.name
        self.size = block.size
        regs = block.registers
        self._regs = [_Reg(i, r) for i, r in enumerate(regs)]
        self._by_name = {r.name: s for r, s in zip(regs, self._regs)}
        # Word index -> _Reg or None (hole); one list lookup decodes an offset.
        self._decode: list[_Reg | None] = [None] * (-(-block.size // REG_BYTES))
        for s in self._regs:
            self._decode[s.reg.offset // REG_BYTES] = s
        self._reset_values = [r.reset for r in regs]
        self._values: list[int] = list(self._reset_values)
        # Per register: None, or the hooks in registration order.
        self._write_hooks: list[list[Callable[[int, int], None]] | None] = [None] * len(regs)
        self._read_hooks: list[list[Callable[[], None]] | None] = [None] * len(regs)

    # ------------------------------------------------------------------ TLM target interface

    def b_transport(self, trans: Payload, delay_ps: int) -> int:
        """Software access at ``trans.address`` (byte offset within the block).

        Sets ``trans.response``: ``BURST_ERROR`` unless an aligned 4-byte access,
        ``BYTE_ENABLE_ERROR`` if byte enables disable a byte, ``ADDRESS_ERROR`` for a hole,
        ``COMMAND_ERROR`` for a write to a register without sw-writable field, else ``OK``.
        Refused accesses change nothing. Returns ``delay_ps`` unchanged (register access
        time is charged by the caller).
        """
        addr = trans.address
        if trans.length != REG_BYTES or addr & 3 or trans.streaming_width < REG_BYTES:
            trans.response = Response.BURST_ERROR
            return delay_ps
        if trans.byte_enable is not None and not all(b == 0xFF for b in trans.byte_enable):
            trans.response = Response.BYTE_ENABLE_ERROR
            return delay_ps
        idx = addr >> 2
        if addr < 0 or idx >= len(self._decode) or (r := self._decode[idx]) is None:
            trans.response = Response.ADDRESS_ERROR
            return delay_ps
        cmd = trans.command
        i = r.index
        values = self._values
        if cmd == _READ:
            hooks = self._read_hooks[i]
            if hooks is not None:
                for fn in hooks:
                    fn()
            v = values[i]
            _WORD.pack_into(trans.data, 0, v & r.read_mask)
            if r.onread:
                values[i] = (v & ~r.rclr) | r.rset
        elif cmd == _WRITE:
            if not r.writable:
                trans.response = Response.COMMAND_ERROR
                return delay_ps
            d = _WORD.unpack_from(trans.data)[0]
            old = values[i]
            pm = r.plain_mask
            new = (old & ~pm) | (d & pm)
            if r.onwrite:
                new = self._apply_onwrite(r, new, d)
            values[i] = new
            hooks = self._write_hooks[i]
            if hooks is not None:
                written = d & r.sw_write_mask
                for fn in hooks:
                    fn(written, old)
        # Command.IGNORE: nothing to do, but the address was valid.
        trans.response = _OK
        return delay_ps

    @staticmethod
    def _apply_onwrite(r: _Reg, new: int, d: int) -> int:
        nd = ~d & REG_MASK
        new &= ~(d & r.woclr)
        new |= d & r.woset
        new ^= d & r.wot
        new &= ~(nd & r.wzc)
        new |= nd & r.wzs
        new ^= nd & r.wzt
        new &= ~r.wclr
        new |= r.wset
        return new

    def transport_dbg(self, trans: Payload) -> int:
        """Debug access without side effects: no hooks, no read-clear, no write-1-to-clear.

        Reads return the raw stored values (write-only fields included); writes set the raw
        stored value of every non-singlepulse field. Accepts any whole number of aligned
        32-bit words and stops at the first hole. Returns bytes transferred (0 if the access
        is misaligned, not a multiple of 4 bytes, or starts in a hole).
        """
        addr, n = trans.address, trans.length
        if addr < 0 or addr & 3 or n & 3:
            return 0
        done = 0
        while done < n:
            idx = (addr + done) >> 2
            r = self._decode[idx] if idx < len(self._decode) else None
            if r is None:
                break
            if trans.command == _READ:
                _WORD.pack_into(trans.data, done, self._values[r.index])
            elif trans.command == _WRITE:
                self._values[r.index] = _WORD.unpack_from(trans.data, done)[0] & r.store_mask
            done += REG_BYTES
        return done

    def get_direct_mem_ptr(self, trans: Payload) -> None:
        """Registers never grant direct memory access."""
        trans.dmi_allowed = False
        return None

    # ------------------------------------------------------------------ hardware side

    def _lookup(self, reg_name: str) -> _Reg:
        try:
            return self._by_name[reg_name]
        except KeyError:
            self.block.reg(reg_name)   # raises KeyError with close names
            raise

    def hw_read(self, reg_name: str, field: str | None = None) -> int:
        """Stored value of register ``reg_name`` (or of its ``field``); no side effects."""
        r = self._lookup(reg_name)
        v = self._values[r.index]
        return v if field is None else r.reg.field(field).extract(v)

    def hw_write(self, reg_name: str, value: int, field: str | None = None) -> None:
        """Set the stored value of register ``reg_name`` (or of its ``field``); no side
        effects, no hooks.

        Raises:
            ValueError: ``value`` is negative, does not fit the field, or (whole register) sets
                a bit outside the register's stored fields (reserved or singlepulse bits).
        """
        r = self._lookup(reg_name)
        if field is None:
            if value < 0 or value & ~r.store_mask:
                raise ValueError(f"{self.name}.{reg_name}: value {value:#x} sets bits outside "
                                 f"the register's fields (mask {r.store_mask:#010x})")
            self._values[r.index] = value
        else:
            f = r.reg.field(field)
            self._values[r.index] = f.insert(self._values[r.index], value)

    def hw_set(self, reg_name: str, field: str) -> None:
        """Set every bit of ``field`` (e.g. latch an interrupt-status bit)."""
        r = self._lookup(reg_name)
        self._values[r.index] |= r.reg.field(field).mask

    def hw_clear(self, reg_name: str, field: str) -> None:
        """Clear every bit of ``field``."""
        r = self._lookup(reg_name)
        self._values[r.index] &= ~r.reg.field(field).mask

    # ------------------------------------------------------------------ hooks

    def on_write(self, reg_name: str, fn: Callable[[int, int], None]) -> None:
        """Call ``fn(written_value, old_value)`` after each software write to ``reg_name``
        has updated the stored value. Hooks run in registration order."""
        i = self._lookup(reg_name).index
        if self._write_hooks[i] is None:
            self._write_hooks[i] = []
        self._write_hooks[i].append(fn)

    def on_read(self, reg_name: str, fn: Callable[[], None]) -> None:
        """Call ``fn()`` before each software read of ``reg_name`` (to refresh the value with
        :meth:`hw_write`). Hooks run in registration order."""
        i = self._lookup(reg_name).index
        if self._read_hooks[i] is None:
            self._read_hooks[i] = []
        self._read_hooks[i].append(fn)

    # ------------------------------------------------------------------ reset and snapshots

    def reset(self) -> None:
        """Every register back to its reset value (hardware-written ones too); no hooks."""
        self._values[:] = self._reset_values

    def state(self) -> dict:
        """Plain-data snapshot: ``{"block": name, "values": {reg_name: value}}``."""
        return {"block": self.name,
                "values": {s.reg.name: self._values[s.index] for s in self._regs}}

    def load_state(self, state: dict) -> None:
        """Restore a snapshot taken by :meth:`state` (of a block with the same registers).

        Raises:
            ValueError: the snapshot belongs to another block or its registers differ.
        """
        values = state.get("values", {})
        if state.get("block") != self.name or set(values) != set(self._by_name):
            raise ValueError(f"snapshot of block {state.get('block')!r} with registers "
                             f"{sorted(values)} does not match block {self.name!r}")
        new = list(self._values)
        for name, v in values.items():
            if not isinstance(v, int) or not 0 <= v <= REG_MASK:
                raise ValueError(f"{self.name}.{name}: bad snapshot value {v!r}")
            new[self._by_name[name].index] = v
        self._values = new

    def __repr__(self) -> str:
        return f"RegisterBlock({self.name!r}, {len(self._regs)} registers, {self.size} bytes)"
