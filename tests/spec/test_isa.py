"""Command packets and core instructions: the table, its encoder/decoder, and the data sheet.

Round trips are driven from the table, so a new opcode is covered without touching this file.
"""

from __future__ import annotations

import pickle
import random
import struct

import numpy as np
import pytest

from vp.spec import gen_isa as gen
from vp.spec import isa
from vp.spec.isa import INSTRUCTIONS, PACKETS, DecodeError, DType, IsaError

FORMATS = (PACKETS, INSTRUCTIONS)
ALL_OPS = [(fmt, spec) for fmt in FORMATS for spec in fmt]
OP_IDS = [f"{fmt.name}-{spec.name}" for fmt, spec in ALL_OPS]


def random_value(rng: random.Random, field: isa.Field):
    if field.enum is not None:
        return rng.choice(list(isa.ENUMS[field.enum]))
    if field.kind == "f32":
        while True:    # a random finite fp32 bit pattern, as a Python float
            v = struct.unpack("<f", struct.pack("<I", rng.getrandbits(32)))[0]
            if np.isfinite(v):
                return v
    lo, hi = isa.KINDS[field.kind][2]
    return rng.choice([lo, hi, rng.randint(lo, hi), rng.randint(lo, min(hi, 4096))])


def random_entry(rng: random.Random, spec: isa.OpSpec) -> tuple[dict, int]:
    fields = {f.name: random_value(rng, f) for f in spec.fields}
    flags = 0
    for fl in spec.flags:
        if rng.random() < 0.5:
            flags |= fl.mask
    return fields, flags


def buffers(data: bytes):
    """The same bytes as every buffer type the decoder accepts."""
    yield data
    yield bytearray(data)
    yield memoryview(data)
    yield np.frombuffer(data, dtype=np.uint8).copy()
    yield np.frombuffer(data, dtype="<u4").copy()


# ---------------------------------------------------------------- table invariants


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_opcodes_and_names_are_unique(fmt):
    codes = [s.code for s in fmt]
    names = [s.name for s in fmt]
    assert len(set(codes)) == len(codes)
    assert len(set(names)) == len(names)
    assert all(c in fmt.codes and c != 0 for c in codes)


def test_formats_have_disjoint_opcodes():
    assert not {s.code for s in PACKETS} & {s.code for s in INSTRUCTIONS}


def test_spec_tables_are_complete():
    """Every opcode of docs/design/npu.md §5 is in the table."""
    assert [s.name for s in PACKETS] == ["NOP", "LAUNCH", "WAIT_CORES", "DMA", "SEM_SIGNAL",
                                         "SEM_WAIT", "FENCE", "TIMESTAMP", "IRQ"]
    assert {s.name for s in INSTRUCTIONS} == {
        "LOAD", "STORE", "SEND", "RECV", "GEMM", "ADD", "MUL", "SCALE", "GELU", "GELU_ERF", "SILU",
        "SOFTMAX", "LAYERNORM", "RMSNORM", "ROPE", "EMBED", "CONVERT", "SEM_SIGNAL", "SEM_WAIT",
        "BARRIER", "END"}
    assert PACKETS["LAUNCH"].field_names == ("core_mask", "program", "arg")
    assert [f.kind for f in PACKETS["DMA"].fields] == ["u64", "u64"] + ["u32"] * 4
    assert INSTRUCTIONS["GEMM"].field_names == ("m", "n", "k", "a", "b", "c", "scale",
                                                "dtype_a", "dtype_b")
    assert {f.name: f.bit for f in INSTRUCTIONS["GEMM"].flags} == {
        "accumulate": 0, "trans_a": 1, "trans_b": 2}
    assert INSTRUCTIONS["SOFTMAX"].flag("causal").bit == 0
    assert PACKETS["FENCE"].flag("irq").bit == 0
    assert INSTRUCTIONS["SOFTMAX"].field("scale").kind == "f32"
    assert INSTRUCTIONS["EMBED"].field("table").kind == "u64"
    assert (int(DType.FP32), int(DType.BF16), int(DType.INT8)) == (0, 1, 2)
    assert [d.itemsize for d in DType] == [4, 2, 1]


@pytest.mark.parametrize("fmt,spec", ALL_OPS, ids=OP_IDS)
def test_entry_invariants(fmt, spec):
    assert spec.desc and spec.name.isidentifier()
    assert 1 <= spec.length_words <= isa.MAX_LENGTH_WORDS
    assert spec.length_words == 1 + sum(f.words for f in spec.fields)
    assert struct.calcsize(spec.struct_format) == spec.nbytes == 4 * spec.length_words
    names = [f.name for f in spec.fields] + [f.name for f in spec.flags]
    assert len(set(names)) == len(names)
    assert not set(names) & isa.RESERVED_NAMES
    for f in spec.fields:
        assert f.kind in isa.KINDS and f.desc.strip(), f.name
    for fl in spec.flags:
        assert 0 <= fl.bit < isa.FLAG_BITS and fl.desc.strip()
    assert spec.flag_mask <= isa.FLAGS_MASK
    assert len({fl.bit for fl in spec.flags}) == len(spec.flags)


def test_decode_causes_are_error_codes():
    from vp.spec.regmap import ErrCode
    for cause in (isa.BAD_OPCODE, isa.MALFORMED_PACKET, isa.MISALIGNED):
        assert ErrCode[cause].name == cause


def test_bad_table_rows_are_refused():
    good = isa.Field("x", "u32", "An x.")
    with pytest.raises(ValueError, match="duplicate"):
        isa.Format("t", "T", [isa.OpSpec(1, "A", "a", (good,)), isa.OpSpec(1, "B", "b")])
    with pytest.raises(ValueError, match="not allowed"):
        isa.Format("t", "T", [isa.OpSpec(1, "A", "a", (isa.Field("flags", "u32", "f"),))])
    with pytest.raises(ValueError, match="unknown kind"):
        isa.Field("x", "u16", "f")
    with pytest.raises(ValueError, match="description"):
        isa.Format("t", "T", [isa.OpSpec(1, "A", "a", (isa.Field("x", "u32", ""),))])
    with pytest.raises(ValueError, match="flag bits"):
        isa.Format("t", "T", [isa.OpSpec(1, "A", "a", (), (isa.Flag("f", 16, "f"),))])
    with pytest.raises(ValueError, match="do not fit"):
        isa.Format("t", "T", [isa.OpSpec(1, "A", "a", tuple(
            isa.Field(f"x{i}", "u64", "x") for i in range(128)))])
    with pytest.raises(ValueError, match="outside"):
        isa.Format("t", "T", [isa.OpSpec(0x90, "A", "a")], range(1, 0x80))


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt,spec", ALL_OPS, ids=OP_IDS)
def test_round_trip_random_fields(fmt, spec):
    rng = random.Random(f"{fmt.name}/{spec.name}")
    for _ in range(25):
        fields, flags = random_entry(rng, spec)
        data = isa.encode(fmt, spec.name, flags=flags, **fields)
        assert len(data) == spec.nbytes
        header = struct.unpack_from("<I", data)[0]
        assert header & 0xFF == spec.code
        assert header >> 8 & 0xFF == spec.length_words
        assert header >> 16 == flags
        for buf in buffers(data):
            d = isa.decode(fmt, buf)
            assert (d.op, d.opcode, d.flags) == (spec.name, spec.code, flags)
            assert (d.length_words, d.nbytes) == (spec.length_words, spec.nbytes)
            expect = {k: (np.float32(v) if isinstance(v, float) else int(v))
                      for k, v in fields.items()}
            assert d.fields == expect
            for name, value in expect.items():
                assert getattr(d, name) == value
            for fl in spec.flags:
                assert getattr(d, fl.name) is bool(flags & fl.mask) is d.flag(fl.name)
            assert d.to_bytes() == data


@pytest.mark.parametrize("fmt,spec", ALL_OPS, ids=OP_IDS)
def test_flags_by_name_and_at_an_offset(fmt, spec):
    rng = random.Random(spec.name)
    fields, _ = random_entry(rng, spec)
    named = {fl.name: True for fl in spec.flags}
    data = fmt.encode(spec.name, **fields, **named)
    assert fmt.encode(spec.name, flags=[fl.name for fl in spec.flags], **fields) == data
    assert fmt.encode(spec.name, flags=spec.flag_mask, **fields) == data
    assert fmt.encode(spec.name, flags=named, **fields) == data
    off = fmt.encode(spec.name, flags={fl.name: False for fl in spec.flags}, **fields)
    assert fmt.decode(off).flags == 0
    pad = isa.encode(fmt, "NOP" if fmt is PACKETS else "END")
    buf = pad * 3 + data + pad
    d = fmt.decode(buf, 3 * len(pad))
    assert d.flags == spec.flag_mask and d.flag_names == tuple(named)
    assert d.to_bytes() == data


def test_per_format_helpers_and_format_names():
    a = isa.encode_packet("FENCE", value=7, irq=True)
    assert a == isa.encode("packet", "FENCE", value=7, irq=True) \
        == isa.encode(PACKETS, "FENCE", flags=1, value=7) == struct.pack("<II", 0x00010286, 7)
    assert isa.decode("packets", a).irq is True
    b = isa.encode_instruction("END")
    assert b == isa.encode("instruction", "END") == struct.pack("<I", 0x0000013F)
    assert isa.decode(INSTRUCTIONS, b).op == "END"
    with pytest.raises(IsaError, match="unknown format"):
        isa.encode("opcodes", "END")
    with pytest.raises(IsaError, match="unknown format"):
        isa.decode("opcodes", b)


def test_f32_and_enum_encoding():
    d = isa.decode(INSTRUCTIONS, isa.encode_instruction(
        "CONVERT", n=4, a=0, out=16, from_dtype=DType.FP32, to_dtype="INT8", scale=0.1))
    assert d.scale == np.float32(0.1) and d.to_dtype == DType.INT8 and d.from_dtype == 0
    for v in (float("inf"), -float("inf"), 3.4028235e38, np.float32(1.5), 2):
        isa.encode_instruction("SCALE", n=1, a=0, out=0, factor=v)
    nan = isa.decode(INSTRUCTIONS, isa.encode_instruction("SCALE", n=1, a=0, out=0,
                                                          factor=float("nan")))
    assert np.isnan(nan.factor)


def test_boundary_values_encode():
    isa.encode_packet("DMA", src=0, dst=2**64 - 1, row_bytes=2**32 - 1, rows=0,
                      src_stride=0, dst_stride=np.uint32(5))
    isa.encode_packet("LAUNCH", core_mask=np.uint64(2**64 - 1), program=0, arg=0)


# ---------------------------------------------------------------- encoder errors


@pytest.mark.parametrize("fmt,spec", ALL_OPS, ids=OP_IDS)
def test_out_of_range_values_are_refused(fmt, spec):
    rng = random.Random(spec.name)
    fields, _ = random_entry(rng, spec)
    for f in spec.fields:
        if f.kind == "f32":
            bad_values = [1e39, -1e39, "1.0", None]
        elif f.enum is not None:
            bad_values = [len(isa.ENUMS[f.enum]), "FP64", 1.0]
        else:
            lo, hi = isa.KINDS[f.kind][2]
            bad_values = [hi + 1, lo - 1, 1.0, True, "3"]
        for bad in bad_values:
            with pytest.raises(IsaError) as exc:
                fmt.encode(spec.name, **{**fields, f.name: bad})
            msg = str(exc.value)
            assert spec.name in msg and repr(f.name) in msg, msg
            assert exc.value.op == spec.name and exc.value.field == f.name
            if isinstance(bad, int) and not isinstance(bad, bool) and f.enum is None:
                assert str(bad) in msg and "range" in msg and str(lo) in msg and str(hi) in msg


def test_range_error_message():
    with pytest.raises(IsaError) as exc:
        isa.encode_instruction("GEMM", m=2**32, n=1, k=1, a=0, b=0, c=0, scale=0,
                               dtype_a=0, dtype_b=0)
    assert str(exc.value) == ("instruction GEMM: field 'm' = 4294967296 (0x100000000) out of "
                              "range for u32 [0, 4294967295]")
    assert isinstance(exc.value, ValueError) and exc.value.value == 2**32


def test_unknown_field_names_it_and_suggests():
    with pytest.raises(IsaError) as exc:
        isa.encode_instruction("GEMM", m=1, n=1, k=1, a=0, b=0, c=0, scale=0, dtype_a=0,
                               dtype_b=0, acumulate=True)
    msg = str(exc.value)
    assert "GEMM" in msg and "'acumulate'" in msg and "did you mean accumulate" in msg
    assert exc.value.field == "acumulate"


def test_missing_field_is_named():
    with pytest.raises(IsaError, match=r"LAUNCH: missing field\(s\) program, arg") as exc:
        isa.encode_packet("LAUNCH", core_mask=1)
    assert exc.value.field == "program"


def test_unknown_op_and_flag():
    with pytest.raises(IsaError, match="unknown instruction 'GEM'.*did you mean GEMM"):
        isa.encode_instruction("GEM")
    with pytest.raises(IsaError, match="unknown packet 'LAUNCH2'.*did you mean LAUNCH"):
        isa.encode_packet("LAUNCH2")
    with pytest.raises(IsaError, match="no flag 'irqq'.*did you mean irq"):
        isa.encode_packet("FENCE", flags=["irqq"], value=1)
    with pytest.raises(IsaError, match="undefined bits"):
        isa.encode_packet("FENCE", flags=0b10, value=1)
    with pytest.raises(IsaError, match="expected a bool"):
        isa.encode_packet("FENCE", value=1, irq=2)
    with pytest.raises(IsaError, match="expected a bool"):
        isa.encode_packet("FENCE", flags={"irq": "yes"}, value=1)
    with pytest.raises(IsaError, match="no flag 'iqr'"):
        isa.encode_packet("FENCE", flags={"iqr": False}, value=1)
    with pytest.raises(IsaError, match="no flag 'irq'"):
        isa.decode(PACKETS, isa.encode_packet("NOP")).flag("irq")


# ---------------------------------------------------------------- decoder errors


def _cause(fmt, buf, offset=0) -> DecodeError:
    with pytest.raises(DecodeError) as exc:
        fmt.decode(buf, offset)
    return exc.value


def test_unknown_opcode_is_bad_opcode():
    err = _cause(PACKETS, isa.encode_packet("NOP") * 2 + struct.pack("<I", 0x0000015A), 8)
    assert err.cause == "BAD_OPCODE" and err.offset == 8 and err.opcode == 0x5A
    assert "offset 0x8" in str(err) and "0x5A" in str(err) and "0x80" in str(err)
    # a core instruction in a ring, and a packet in a program, are BAD_OPCODE
    assert _cause(PACKETS, isa.encode_instruction("END")).cause == "BAD_OPCODE"
    assert _cause(INSTRUCTIONS, isa.encode_packet("NOP")).cause == "BAD_OPCODE"
    # zeroed memory: opcode 0
    assert _cause(INSTRUCTIONS, bytes(16)).cause == "BAD_OPCODE"


def test_wrong_length_is_malformed():
    good = isa.encode_packet("FENCE", value=3)
    for length in (0, 1, 3, 255):
        bad = bytearray(good + bytes(1024))
        bad[1] = length
        err = _cause(PACKETS, bytes(bad))
        assert err.cause == "MALFORMED_PACKET" and err.opcode == 0x86 and err.op == "FENCE"
        assert f"length_words {length}, expected 2" in str(err) and "offset 0x0" in str(err)


def test_undefined_flag_bits_are_malformed():
    bad = bytearray(isa.encode_packet("FENCE", value=3))
    bad[2] = 0b10
    err = _cause(PACKETS, bytes(bad))
    assert err.cause == "MALFORMED_PACKET" and "undefined flag bits 0x0002" in str(err)


def test_entry_beyond_buffer_is_malformed():
    data = isa.encode_packet("LAUNCH", core_mask=1, program=0, arg=0)
    for cut in (4, 8, len(data) - 4):
        err = _cause(PACKETS, data[:cut])
        assert err.cause == "MALFORMED_PACKET" and "needs 28 bytes" in str(err)
    for offset in (len(data), len(data) + 4, -4):
        assert _cause(PACKETS, data, offset).cause == "MALFORMED_PACKET"
    assert _cause(PACKETS, b"").cause == "MALFORMED_PACKET"


def test_misaligned_offset():
    data = bytes(2) + isa.encode_packet("NOP") * 2
    err = _cause(PACKETS, data, 2)
    assert err.cause == "MISALIGNED" and err.offset == 2


def test_decode_errors_pickle():
    err = _cause(PACKETS, bytes(8))
    back = pickle.loads(pickle.dumps(err))
    assert (back.cause, back.offset, back.opcode, str(back)) == \
        (err.cause, err.offset, err.opcode, str(err))
    assert isinstance(err, IsaError) and isinstance(err, ValueError)


# ---------------------------------------------------------------- streams and programs


def _sample_program() -> isa.Program:
    p = isa.Program()
    p.LOAD(hbm=0x1000, sram=0, row_bytes=64, rows=4, hbm_stride=64, sram_stride=64)
    p.append("SOFTMAX", rows=4, cols=16, a=0, out=0x100, scale=0.25, pos0=2, causal=True)
    p.BARRIER(core_mask=0b11)
    p.END()
    return p


def test_program_builder():
    p = _sample_program()
    assert len(p) == 4 and p.nbytes == (8 + 7 + 3 + 1) * 4
    assert p.append("END") == p.nbytes - 4
    assert [d.op for d in p] == ["LOAD", "SOFTMAX", "BARRIER", "END", "END"]
    words = p.to_words()
    assert words.dtype == np.dtype("<u4") and words.tobytes() == p.to_bytes()
    q = isa.Program("instruction")
    assert q.extend(p) == 0 and q.extend(p.to_bytes()) == p.nbytes and len(q) == 10
    with pytest.raises(DecodeError):
        q.extend(b"\x00\x00\x00\x00")
    with pytest.raises(IsaError):
        q.extend(isa.Program(PACKETS))
    with pytest.raises(AttributeError):
        p.GEMMX
    with pytest.raises(IsaError, match="missing"):
        p.GEMM(m=1)
    assert "5 entries" in repr(p)


def test_decode_stream():
    p = _sample_program()
    data = p.to_bytes()
    ops = [d.op for d in isa.decode_stream(INSTRUCTIONS, data)]
    assert ops == ["LOAD", "SOFTMAX", "BARRIER", "END"]
    # from an offset, stopping at END, in a larger buffer (garbage after END is not read)
    buf = np.frombuffer(bytes(8) + data + b"\xff" * 16, dtype=np.uint8)
    got = list(isa.decode_stream("instruction", buf, 8, stop="END"))
    assert [d.op for d in got] == ops and got[1].causal and got[1].scale == 0.25
    # an entry crossing `end` is malformed
    with pytest.raises(DecodeError) as exc:
        list(isa.decode_stream(INSTRUCTIONS, data, 0, 40))
    assert exc.value.cause == "MALFORMED_PACKET" and exc.value.offset == 32
    with pytest.raises(DecodeError) as exc:
        list(isa.decode_stream(INSTRUCTIONS, data, 0, 34))
    assert exc.value.cause == "MALFORMED_PACKET"
    assert list(isa.decode_stream(INSTRUCTIONS, data, 8, 8)) == []


def test_disassemble():
    p = _sample_program()
    text = p.disassemble(base=0x2000)
    lines = text.splitlines()
    assert lines[0] == ("0x2000: LOAD hbm=0x1000 sram=0x0 row_bytes=64 rows=4 hbm_stride=64 "
                        "sram_stride=64")
    assert lines[1] == "0x2020: SOFTMAX.causal rows=4 cols=16 a=0x0 out=0x100 scale=0.25 pos0=2"
    assert lines[3] == "0x2048: END"
    assert isa.disassemble(INSTRUCTIONS, p.to_bytes(), base=0x2000) == text
    assert "; 0000013F" in p.disassemble(words=True).splitlines()[-1]
    bad = isa.disassemble(INSTRUCTIONS, p.to_bytes() + struct.pack("<I", 0x0000017E))
    assert bad.splitlines()[-1].startswith("0x004C: .word 0x0000017E  ; BAD_OPCODE")
    assert isa.disassemble(PACKETS, b"") == ""


def test_decoded_entries():
    p = _sample_program()
    d = next(iter(p))
    assert isinstance(d, isa.Decoded) and isinstance(d, tuple)
    assert d.hbm == 0x1000 and d[0] == d.header and d.spec is INSTRUCTIONS["LOAD"]
    assert repr(d).startswith("<instruction LOAD hbm=0x1000")
    assert pickle.loads(pickle.dumps(d)) == d
    assert type(pickle.loads(pickle.dumps(d))) is type(d)
    assert INSTRUCTIONS.cls("LOAD") is type(d) and INSTRUCTIONS.op(0x01).name == "LOAD"
    assert isa.opcode_name(PACKETS, 0x86) == "FENCE" and isa.opcode_name("packet", 0x01) is None


def test_custom_format_covers_i32():
    """A new table gets encoder, decoder and checks with no new code."""
    fmt = isa.Format("test", "Test", [isa.OpSpec(0x01, "OFFSET", "Add a signed offset.", (
        isa.Field("delta", "i32", "Signed byte delta."),
        isa.Field("gain", "f32", "Gain."),
        isa.Field("where", "u64", "Address.")), (isa.Flag("wrap", 3, "Wrap around."),))])
    data = fmt.encode("OFFSET", delta=-5, gain=0.5, where=2**40, wrap=True)
    d = fmt.decode(data)
    assert (d.delta, d.gain, d.where, d.wrap, d.flags) == (-5, 0.5, 2**40, True, 8)
    with pytest.raises(IsaError, match=r"out of range for i32 \[-2147483648, 2147483647\]"):
        fmt.encode("OFFSET", delta=2**31, gain=0, where=0)


# ---------------------------------------------------------------- the generated data sheet


@pytest.fixture(scope="module")
def fresh():
    return gen.generate()


def test_generated_doc_is_not_stale(fresh):
    stale = [rel for rel, text in fresh.items()
             if not (gen.ROOT / rel).exists()
             or (gen.ROOT / rel).read_text(encoding="utf-8") != text]
    assert not stale, (f"generated files are stale: {', '.join(stale)}; "
                       "run `python -m vp.spec.gen_isa`")


def test_generation_is_deterministic_and_marked(fresh):
    assert gen.generate() == fresh
    assert set(fresh) == set(gen.OUTPUTS) == {"docs/isa.md"}
    first = fresh[gen.MD_REL].splitlines()[0]
    assert "GENERATED" in first and "do not edit" in first


def test_doc_covers_the_table(fresh):
    text = fresh[gen.MD_REL]
    for fmt, spec in ALL_OPS:
        assert f"{spec.name} — opcode 0x{spec.code:02X}" in text
        for f in spec.fields:
            assert f.desc.split(".")[0] in text
        for fl in spec.flags:
            assert f"| {fl.bit} | {16 + fl.bit} | {fl.name} |" in text
    for d in DType:
        assert f"| {int(d)} | {d.name} | {d.itemsize} |" in text
    for reg in ("db.DOORBELL[0]", "FENCE[0]", "RING_SIZE[0]", "RING_BASE_LO[0]"):
        assert reg in text


def test_doc_examples_are_the_encoder_output(fresh):
    text = fresh[gen.MD_REL]
    ring = gen.example_packets()
    assert [d.op for d in ring] == ["DMA", "LAUNCH", "WAIT_CORES", "FENCE"]
    assert isa.hexdump(ring.to_bytes(), base=gen.RING_BASE) in text
    assert ring.disassemble(base=gen.RING_BASE) in text
    prog = gen.example_program()
    assert [d.op for d in prog] == ["LOAD", "LOAD", "GEMM", "STORE", "END"]
    assert isa.hexdump(prog.to_bytes(), base=gen.PROGRAM) in text
    assert prog.disassemble(base=gen.PROGRAM) in text
    # the Python snippet in the data sheet builds the same bytes
    snippet = gen.python_source(prog)
    assert snippet in text
    scope: dict = {}
    exec(snippet, scope)
    assert scope["image"] == prog.to_bytes()


def test_check_mode_names_stale_file_and_writes_nothing(tmp_path, monkeypatch, capsys, fresh):
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1              # missing
    assert "docs/isa.md" in capsys.readouterr().err
    assert not (tmp_path / gen.MD_REL).exists()
    assert gen.main([]) == 0
    assert (tmp_path / gen.MD_REL).read_text(encoding="utf-8") == fresh[gen.MD_REL]
    assert gen.main(["--check"]) == 0
    doctored = fresh[gen.MD_REL].replace("LAUNCH", "LAUNCHX", 1)
    (tmp_path / gen.MD_REL).write_text(doctored, encoding="utf-8")
    capsys.readouterr()
    assert gen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "stale: docs/isa.md" in err and "python -m vp.spec.gen_isa" in err
    assert (tmp_path / gen.MD_REL).read_text(encoding="utf-8") == doctored
