"""The generic register block, driven from the register map.

Expected behaviour is derived here from each field's access properties (sw, onread, onwrite,
singlepulse), independently of the model's precomputed masks, for every register of the map;
a small synthetic block covers the side effects the map does not use yet.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from models.regblock import RegisterBlock
from vp.kernel.payload import Command, Payload, Response
from vp.spec.regdefs import Block, Field, Register
from vp.spec.regmap import REGMAP

REGS = list(REGMAP.registers())
ALL_ONES = 0xFFFF_FFFF
PATTERNS = (ALL_ONES, 0xA5A5_A5A5, 0x5A5A_5A5A, 0x0000_0001, 0)


def ids(r: Register) -> str:
    return r.full_name


def block_of(reg: Register) -> RegisterBlock:
    return RegisterBlock(REGMAP.block(reg.block))


def sw_read(b: RegisterBlock, offset: int) -> tuple[Response, int]:
    t = Payload.read(offset, 4)
    assert b.b_transport(t, 123) == 123
    return t.response, int.from_bytes(t.data.tobytes(), "little")


def sw_write(b: RegisterBlock, offset: int, value: int) -> Response:
    t = Payload.write(offset, value.to_bytes(4, "little"))
    assert b.b_transport(t, 123) == 123
    return t.response


def stored_fields_mask(reg: Register) -> int:
    return sum(f.mask for f in reg.fields if not f.singlepulse)


def expected_read(reg: Register, stored: int) -> int:
    """What software reads for a stored value."""
    v = 0
    for f in reg.fields:
        if f.sw in ("r", "rw") and not f.singlepulse:
            v |= stored & f.mask
    return v


def expected_after_read(reg: Register, stored: int) -> int:
    for f in reg.fields:
        if f.onread == "rclr":
            stored &= ~f.mask
        elif f.onread == "rset":
            stored |= f.mask
    return stored


def expected_after_write(reg: Register, stored: int, data: int) -> int:
    """Stored value after software writes ``data``."""
    new = stored
    for f in reg.fields:
        if f.sw not in ("w", "rw") or f.singlepulse:
            continue
        old_f, d = f.extract(stored), f.extract(data)
        ones = (1 << f.width) - 1
        nd = ~d & ones
        v = {None: d, "wuser": d,
             "woclr": old_f & ~d, "woset": old_f | d, "wot": old_f ^ d,
             "wzc": old_f & ~nd, "wzs": old_f | nd, "wzt": old_f ^ nd,
             "wclr": 0, "wset": ones}[f.onwrite]
        new = f.insert(new, v)
    return new


def random_stored(reg: Register, rng: random.Random) -> int:
    return rng.getrandbits(32) & stored_fields_mask(reg)


# ---------------------------------------------------------------- reset values


@pytest.mark.parametrize("reg", REGS, ids=ids)
def test_reset_value(reg):
    b = block_of(reg)
    assert b.hw_read(reg.name) == reg.reset
    for f in reg.fields:
        assert b.hw_read(reg.name, f.name) == f.reset
    resp, v = sw_read(b, reg.offset)
    assert resp == Response.OK
    assert v == expected_read(reg, reg.reset)


# ---------------------------------------------------------------- writes


@pytest.mark.parametrize("reg", [r for r in REGS if r.writable], ids=ids)
@pytest.mark.parametrize("pattern", PATTERNS, ids=hex)
def test_write_then_read(reg, pattern):
    b = block_of(reg)
    before = b.hw_read(reg.name)
    assert sw_write(b, reg.offset, pattern) == Response.OK
    after = expected_after_write(reg, before, pattern)
    assert b.hw_read(reg.name) == after
    resp, v = sw_read(b, reg.offset)
    assert resp == Response.OK
    assert v == expected_read(reg, after)
    assert v & ~reg.defined_mask == 0, "reserved bits must read 0"
    assert b.hw_read(reg.name) & ~reg.defined_mask == 0, "reserved bits must not be stored"


@pytest.mark.parametrize("reg", [r for r in REGS if any(f.sw == "rw" and f.onwrite is None
                                                         for f in r.fields)], ids=ids)
def test_rw_fields_round_trip(reg):
    b = block_of(reg)
    for pattern in PATTERNS:
        sw_write(b, reg.offset, pattern)
        _, v = sw_read(b, reg.offset)
        for f in reg.fields:
            if f.sw == "rw" and f.onwrite is None:
                assert f.extract(v) == f.extract(pattern), (f.name, hex(pattern))


@pytest.mark.parametrize("reg", [r for r in REGS if r.read_only], ids=ids)
def test_read_only_write_refused(reg):
    b = block_of(reg)
    stored = random_stored(reg, random.Random(reg.address))
    b.hw_write(reg.name, stored)
    calls = []
    b.on_write(reg.name, lambda w, o: calls.append((w, o)))
    before = b.state()
    for pattern in PATTERNS:
        assert sw_write(b, reg.offset, pattern) == Response.COMMAND_ERROR
    assert b.state() == before
    assert calls == []


@pytest.mark.parametrize("reg", [r for r in REGS if r.writable
                                 and any(f.sw == "r" for f in r.fields)], ids=ids)
def test_read_only_bits_of_mixed_register_ignore_writes(reg):
    b = block_of(reg)
    ro = sum(f.mask for f in reg.fields if f.sw == "r")
    stored = random_stored(reg, random.Random(reg.address))
    b.hw_write(reg.name, stored)
    for pattern in PATTERNS:
        assert sw_write(b, reg.offset, pattern) == Response.OK
        assert b.hw_read(reg.name) & ro == stored & ro


W1C = [(r, f) for r in REGS for f in r.fields if f.onwrite == "woclr"]


@pytest.mark.parametrize("reg,field", W1C, ids=lambda x: getattr(x, "full_name", None)
                         or getattr(x, "name", ""))
def test_write_one_to_clear(reg, field):
    b = block_of(reg)
    others = [f for f in reg.fields if f.onwrite == "woclr" and f is not field]
    for f in [field, *others]:
        b.hw_set(reg.name, f.name)
    assert sw_write(b, reg.offset, 0) == Response.OK      # writing 0 changes nothing
    assert b.hw_read(reg.name, field.name) == (1 << field.width) - 1
    assert sw_write(b, reg.offset, field.mask) == Response.OK
    assert b.hw_read(reg.name, field.name) == 0
    for f in others:
        assert b.hw_read(reg.name, f.name) == (1 << f.width) - 1, f"{f.name} was cleared too"
    _, v = sw_read(b, reg.offset)
    assert field.extract(v) == 0


RC = [(r, f) for r in REGS for f in r.fields if f.onread == "rclr"]


@pytest.mark.parametrize("reg,field", RC, ids=lambda x: getattr(x, "full_name", None)
                         or getattr(x, "name", ""))
def test_read_clears(reg, field):
    b = block_of(reg)
    value = 0x1234_5678 & ((1 << field.width) - 1) or 1
    b.hw_write(reg.name, value, field.name)
    _, v = sw_read(b, reg.offset)
    assert field.extract(v) == value
    assert b.hw_read(reg.name, field.name) == 0
    _, v = sw_read(b, reg.offset)
    assert field.extract(v) == 0


WO = [(r, f) for r in REGS for f in r.fields if f.sw == "w"]


@pytest.mark.parametrize("reg,field", WO, ids=lambda x: getattr(x, "full_name", None)
                         or getattr(x, "name", ""))
def test_write_only_reads_zero(reg, field):
    b = block_of(reg)
    assert sw_write(b, reg.offset, ALL_ONES) == Response.OK
    _, v = sw_read(b, reg.offset)
    assert field.extract(v) == 0
    if not field.singlepulse:   # stored for the device even though software cannot read it
        assert b.hw_read(reg.name, field.name) == (1 << field.width) - 1


SP = [(r, f) for r in REGS for f in r.fields if f.singlepulse]


@pytest.mark.parametrize("reg,field", SP, ids=lambda x: getattr(x, "full_name", None)
                         or getattr(x, "name", ""))
def test_singlepulse_seen_by_hook_not_stored(reg, field):
    b = block_of(reg)
    seen = []

    def hook(written, old):
        seen.append((written, old, b.hw_read(reg.name)))

    b.on_write(reg.name, hook)
    before = b.hw_read(reg.name)
    assert sw_write(b, reg.offset, field.mask) == Response.OK
    assert len(seen) == 1
    written, old, stored_in_hook = seen[0]
    assert field.extract(written) == (1 << field.width) - 1
    assert old == before
    assert field.extract(stored_in_hook) == 0
    assert b.hw_read(reg.name, field.name) == 0
    _, v = sw_read(b, reg.offset)
    assert field.extract(v) == 0


def test_map_covers_every_access_kind():
    assert W1C and RC and WO and SP
    assert any(r.read_only for r in REGS)


# ---------------------------------------------------------------- refused accesses


def _untouched(b: RegisterBlock, t: Payload, expected: Response, calls: list):
    before = b.state()
    assert b.b_transport(t, 7) == 7
    assert t.response == expected, (t, expected)
    assert b.state() == before
    assert calls == []


def _instrumented(block) -> tuple[RegisterBlock, list]:
    b = RegisterBlock(block)
    calls: list = []
    rng = random.Random(block.offset)
    for r in block.registers:
        b.hw_write(r.name, random_stored(r, rng))
        b.on_write(r.name, lambda w, o, n=r.name: calls.append(("w", n)))
        b.on_read(r.name, lambda n=r.name: calls.append(("r", n)))
    return b, calls


@pytest.mark.parametrize("block", REGMAP.blocks, ids=lambda b: b.name)
def test_bad_width_misalignment_and_holes(block):
    b, calls = _instrumented(block)
    for r in block.registers:
        for length in (1, 2, 3, 8):
            _untouched(b, Payload.read(r.offset, length), Response.BURST_ERROR, calls)
            _untouched(b, Payload.write(r.offset, bytes(length)), Response.BURST_ERROR, calls)
        for skew in (1, 2, 3):
            _untouched(b, Payload.read(r.offset + skew, 4), Response.BURST_ERROR, calls)
            _untouched(b, Payload.write(r.offset + skew, b"\xff" * 4),
                       Response.BURST_ERROR, calls)
    used = {r.offset for r in block.registers}
    holes = [o for o in range(0, block.size + 16, 4) if o not in used] + [-4, 0x10_0000]
    for off in holes:
        _untouched(b, Payload.read(off, 4), Response.ADDRESS_ERROR, calls)
        _untouched(b, Payload.write(off, b"\xff" * 4), Response.ADDRESS_ERROR, calls)


def test_hole_inside_block_and_byte_enables():
    f = Field("V", lsb=0, width=32, sw="rw")
    blk = Block("t", 0x40, 0x10, (Register("A", "t", 0x0, 0x40, 0, (f,)),
                                  Register("B", "t", 0xC, 0x4C, 0, (f,))))
    b = RegisterBlock(blk)
    calls: list = []
    for off in (0x4, 0x8):
        _untouched(b, Payload.read(off, 4), Response.ADDRESS_ERROR, calls)
        _untouched(b, Payload.write(off, b"\x01" * 4), Response.ADDRESS_ERROR, calls)
    t = Payload(Command.WRITE, 0xC, np.ones(4, np.uint8), byte_enable=np.array([0xFF, 0, 0xFF, 0xFF], np.uint8))
    _untouched(b, t, Response.BYTE_ENABLE_ERROR, calls)
    t = Payload(Command.WRITE, 0xC, np.ones(4, np.uint8), byte_enable=np.full(4, 0xFF, np.uint8))
    b.b_transport(t, 0)
    assert t.response == Response.OK and b.hw_read("B") == 0x0101_0101
    t = Payload(Command.IGNORE, 0xC, np.zeros(4, np.uint8))
    b.b_transport(t, 0)
    assert t.response == Response.OK and b.hw_read("B") == 0x0101_0101


# ---------------------------------------------------------------- debug transport and DMI


@pytest.mark.parametrize("block", REGMAP.blocks, ids=lambda b: b.name)
def test_debug_transport_has_no_side_effects(block):
    b, calls = _instrumented(block)
    before = b.state()["values"]
    for r in block.registers:
        t = Payload.read(r.offset, 4)
        assert b.transport_dbg(t) == 4
        # raw stored value: write-only and read-clear fields included, nothing cleared
        assert int.from_bytes(t.data.tobytes(), "little") == before[r.name]
    assert b.state()["values"] == before
    # the whole block in one debug read (registers are contiguous in every block)
    n = block.size
    if all(o in {r.offset for r in block.registers} for o in range(0, n, 4)):
        t = Payload.read(0, n)
        assert b.transport_dbg(t) == n
        words = t.data.view("<u4")
        assert [int(w) for w in words] == [before[r.name] for r in block.registers]
    # debug writes set the raw value: no write-1-to-clear, no hooks
    for r in block.registers:
        raw = stored_fields_mask(r)
        assert b.transport_dbg(Payload.write(r.offset, ALL_ONES.to_bytes(4, "little"))) == 4
        assert b.hw_read(r.name) == raw
    assert calls == []
    assert b.transport_dbg(Payload.read(block.size + 64, 4)) == 0
    assert b.transport_dbg(Payload.read(1, 4)) == 0
    assert b.transport_dbg(Payload.read(0, 3)) == 0
    assert b.get_direct_mem_ptr(Payload.read(0, 4)) is None


# ---------------------------------------------------------------- hooks


@pytest.mark.parametrize("reg", REGS, ids=ids)
def test_hooks_order_and_arguments(reg):
    b = block_of(reg)
    log = []
    b.on_read(reg.name, lambda: log.append("r1"))
    b.on_read(reg.name, lambda: log.append("r2"))
    _, _ = sw_read(b, reg.offset)
    assert log == ["r1", "r2"]
    if not reg.writable:
        return
    log.clear()
    before = b.hw_read(reg.name)
    b.on_write(reg.name, lambda w, o: log.append(("w1", w, o, b.hw_read(reg.name))))
    b.on_write(reg.name, lambda w, o: log.append(("w2", w, o)))
    data = 0xFFFF_FFFF
    sw_write(b, reg.offset, data)
    writable = sum(f.mask for f in reg.fields if f.sw in ("w", "rw"))
    after = expected_after_write(reg, before, data)
    assert log == [("w1", data & writable, before, after), ("w2", data & writable, before)]


def test_read_hook_refreshes_value_before_read():
    reg = next(r for r in REGS if r.readable and any(f.sw == "r" and f.width == 32
                                                     for f in r.fields))
    b = block_of(reg)
    ticks = iter(range(100, 200))
    b.on_read(reg.name, lambda: b.hw_write(reg.name, next(ticks)))
    assert sw_read(b, reg.offset)[1] == 100
    assert sw_read(b, reg.offset)[1] == 101


def test_hw_access_checks():
    reg = REGMAP.reg("dma.CTRL")
    b = block_of(reg)
    with pytest.raises(KeyError, match="CTRL"):
        b.hw_read("CTLR")
    with pytest.raises(KeyError, match="IRQ_EN"):
        b.hw_read("CTRL", "IRQEN")
    with pytest.raises(ValueError):
        b.hw_write("CTRL", 2, "IRQ_EN")              # 1-bit field
    with pytest.raises(ValueError):
        b.hw_write("CTRL", 1 << 31)                  # reserved bit
    with pytest.raises(ValueError):
        b.hw_write("CTRL", 1 << 32)
    b.hw_clear("CTRL", "IRQ_EN")
    assert b.hw_read("CTRL", "IRQ_EN") == 0
    b.hw_set("CTRL", "IRQ_EN")
    assert b.hw_read("CTRL") == reg.field("IRQ_EN").mask


# ---------------------------------------------------------------- generic side effects


def test_other_onwrite_and_onread_kinds():
    kinds = ["woset", "wot", "wzc", "wzs", "wzt", "wclr", "wset", "wuser", None]
    fields = tuple(Field(f"F{i}", lsb=3 * i, width=3, sw="rw", onwrite=k)
                   for i, k in enumerate(kinds))
    fields += (Field("WO", lsb=27, width=1, sw="w"),     # stored, but reads 0
               Field("RS", lsb=28, width=2, sw="r", hw="w", onread="rset"))
    reg = Register("R", "t", 0, 0, 0, fields)
    b = RegisterBlock(Block("t", 0, 4, (reg,)))
    rng = random.Random(1)
    for _ in range(200):
        stored = random_stored(reg, rng)
        data = rng.getrandbits(32)
        b.hw_write("R", stored)
        assert sw_write(b, 0, data) == Response.OK
        assert b.hw_read("R") == expected_after_write(reg, stored, data), (hex(stored), hex(data))
        s = b.hw_read("R")
        _, v = sw_read(b, 0)
        assert v == expected_read(reg, s)
        assert b.hw_read("R") == expected_after_read(reg, s)


# ---------------------------------------------------------------- reset and snapshots


@pytest.mark.parametrize("block", REGMAP.blocks, ids=lambda b: b.name)
def test_reset_restores_every_register(block):
    b, _ = _instrumented(block)
    for r in block.registers:
        sw_write(b, r.offset, 0xFFFF_FFFF)
    b.reset()
    for r in block.registers:
        assert b.hw_read(r.name) == r.reset


@pytest.mark.parametrize("block", REGMAP.blocks, ids=lambda b: b.name)
def test_state_round_trip(block):
    b, _ = _instrumented(block)
    snap = json.loads(json.dumps(b.state()))      # plain data
    other = RegisterBlock(block)
    other.load_state(snap)
    assert other.state() == b.state()
    for r in block.registers:
        assert sw_read(other, r.offset) == sw_read(b, r.offset)
    assert other.state() == b.state()
    wrong = dict(snap, block="nope")
    with pytest.raises(ValueError):
        other.load_state(wrong)
    missing = {"block": block.name, "values": dict(list(snap["values"].items())[1:])}
    with pytest.raises(ValueError):
        other.load_state(missing)
