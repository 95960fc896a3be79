"""Programs on the cores of the full board, driven through a command queue over every
transport: results bit-exact with the op numerics, CA→CF activations over the NoC, counters,
and a core fault surfacing as a driver exception naming the core, instruction and cause."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.queue import CommandQueue, CoreError
from vp.spec import isa, numerics
from vp.spec.board_config import load_board
from vp.spec.regmap import ErrCode
from vp.spec.units import MS

CFG = load_board(None)
KINDS = CFG.cores.kinds()
CA, CF = KINDS.index("ca"), KINDS.index("cf")
BASE = CFG.hbm.base
RING, PROGS, DATA = BASE + 0x10_0000, BASE + 0x20_0000, BASE + 0x100_0000


def load(prog, hbm, sram, nbytes):
    prog.append("LOAD", hbm=hbm, sram=sram, row_bytes=nbytes, rows=1, hbm_stride=nbytes,
                sram_stride=nbytes)


def store(prog, hbm, sram, nbytes):
    prog.append("STORE", hbm=hbm, sram=sram, row_bytes=nbytes, rows=1, hbm_stride=nbytes,
                sram_stride=nbytes)


def run(device, programs: dict[int, isa.Program]) -> CommandQueue:
    """Place each core's program in HBM, launch them all, wait for them."""
    q = CommandQueue(device, 0, RING, 4096)
    mask = 0
    for i, (core, prog) in enumerate(sorted(programs.items())):
        device.write_mem(PROGS + i * 0x1_0000, np.frombuffer(prog.to_bytes(), np.uint8))
        q.submit(isa.encode_packet("LAUNCH", core_mask=1 << core, program=PROGS + i * 0x1_0000,
                                   arg=0))
        mask |= 1 << core
    q.submit(isa.encode_packet("WAIT_CORES", core_mask=mask))
    q.sync(100 * MS)
    return q


def test_gemm_on_a_cf_core_is_bit_exact(device):
    rng = np.random.default_rng(3)
    m, k, n = 4, 96, 40
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    device.write_mem(DATA, a)
    device.write_mem(DATA + 0x10_000, b)
    prog = isa.Program()
    load(prog, DATA, 0, a.nbytes)
    load(prog, DATA + 0x10_000, 0x4000, b.nbytes)
    prog.append("GEMM", m=m, n=n, k=k, a=0, b=0x4000, c=0x8000, scale=0, dtype_a="FP32",
                dtype_b="FP32")
    store(prog, DATA + 0x20_000, 0x8000, m * n * 4)
    prog.append("END")
    before = device.stats()["units"][f"core{CF}"]["macs_fp32"]
    run(device, {CF: prog})
    c = device.read_mem(DATA + 0x20_000, m * n * 4).view(np.float32).reshape(m, n)
    assert np.array_equal(c, numerics.gemm(a, b))
    stats = device.stats()
    assert stats["units"][f"core{CF}"]["macs_fp32"] - before == m * n * k
    assert all(0 <= s["utilisation"] <= 1 for s in stats["kinds"].values())


def test_ca_core_softmax_sent_to_a_cf_core(device):
    """A CA core computes a causal softmax and SENDs it over the mesh; a CF core RECVs it and
    stores it: the bytes arrive intact and equal the numerics."""
    x = np.random.default_rng(5).standard_normal((8, 64), dtype=np.float32)
    device.write_mem(DATA, x)
    ca = isa.Program()
    load(ca, DATA, 0, x.nbytes)
    ca.append("SOFTMAX", rows=8, cols=64, a=0, out=0x1000, scale=0.125, pos0=56, causal=True)
    ca.append("SEND", core=CF, sram=0x1000, bytes=x.nbytes, tag=7)
    ca.append("END")
    cf = isa.Program()
    cf.append("RECV", core=CA, sram=0x2000, bytes=x.nbytes, tag=7)
    store(cf, DATA + 0x8000, 0x2000, x.nbytes)
    cf.append("END")
    run(device, {CA: ca, CF: cf})
    got = device.read_mem(DATA + 0x8000, x.nbytes).view(np.float32).reshape(8, 64)
    assert np.array_equal(got, numerics.softmax(x, scale=0.125, causal=True, pos0=56))
    assert device.stats()["units"][f"core{CA}"]["noc_sent_bytes"] >= x.nbytes


def test_core_fault_names_core_instruction_and_cause(device):
    sram = getattr(CFG.cores, KINDS[CF]).sram
    bad = isa.Program()
    offset = bad.append("LOAD", hbm=DATA, sram=sram - 16, row_bytes=64, rows=1, hbm_stride=64,
                        sram_stride=64)
    bad.append("END")
    with pytest.raises(CoreError) as info:
        run(device, {CF: bad})
    err = info.value
    assert (err.core, err.code) == (CF, ErrCode.SRAM_OVERFLOW)
    assert err.address == PROGS + offset
    assert f"core {CF}: instruction at 0x{PROGS + offset:x} (opcode LOAD) failed: SRAM_OVERFLOW" \
        in str(err)
    device.clear_error()                      # recovery: the core runs the next program
    ok = isa.Program()
    ok.append("END")
    run(device, {CF: ok})
    assert not device.read_reg("irq.INT_RAW") & device.irq_mask("CORE_ERROR")
