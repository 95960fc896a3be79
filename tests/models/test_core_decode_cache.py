"""models.core's decode cache: decoding is cached by the bytes of each fetched block, so a
rerun decodes nothing again, yet every fetch is still paid and a rewritten program (or a
corrupted one) behaves exactly as if nothing were cached."""

from __future__ import annotations

import numpy as np

import models.core
from models.core import FETCH_BYTES
from tests.models.test_core import DATA, Rig, _check_fault, load, sim  # noqa: F401 (fixture)
from vp.spec import isa
from vp.spec import numerics as nx
from vp.spec.regmap import ErrCode


def _scale_program(factor: float) -> isa.Program:
    p = isa.Program()
    load(p, DATA, 0, 16)
    p.SCALE(n=4, a=0, out=0x100, factor=factor)
    p.END()
    return p


def _run(rig: Rig, prog: isa.Program) -> tuple[np.ndarray, dict, int]:
    t0 = rig.sim.now
    rig.launch(0, prog)
    rig.run()
    core = rig.cores[0]
    assert core.error == 0 and not core.busy
    return core.sram.view(0x100, 4, np.float32).copy(), core.counters(), rig.sim.now - t0


def test_rerun_is_decoded_once_and_timed_the_same(sim, monkeypatch):  # noqa: F811
    rig = Rig(sim)
    x = np.arange(4, dtype=np.float32)
    rig.write(DATA, x)
    calls = []
    real = models.core._decode
    monkeypatch.setattr(models.core, "_decode", lambda buf, off: calls.append(off) or real(buf, off))
    prog = _scale_program(2.0)
    y1, c1, t1 = _run(rig, prog)
    decoded = len(calls)
    y2, c2, t2 = _run(rig, prog)
    assert decoded == len(prog) and len(calls) == decoded      # the rerun decoded nothing
    assert np.array_equal(y1, nx.scale(x, 2.0)) and np.array_equal(y1, y2)
    assert t1 == t2                                            # same time, fetch included
    assert c1["fetch_bytes"] == FETCH_BYTES and c2["fetch_bytes"] == 2 * FETCH_BYTES  # paid
    assert c2["fetch_ps"] == 2 * c1["fetch_ps"] and c2["busy_ps"] == 2 * c1["busy_ps"]


def test_rewritten_program_runs_the_new_code(sim):  # noqa: F811
    rig = Rig(sim)
    x = np.arange(4, dtype=np.float32)
    rig.write(DATA, x)
    y1, _, _ = _run(rig, _scale_program(2.0))
    y2, _, _ = _run(rig, _scale_program(3.0))                  # same address, new bytes
    assert np.array_equal(y1, nx.scale(x, 2.0)) and np.array_equal(y2, nx.scale(x, 3.0))


def test_corrupted_program_after_a_good_run_faults(sim):  # noqa: F811
    rig = Rig(sim)
    prog = _scale_program(2.0)
    _run(rig, prog)
    address = rig.program(0, prog)
    scale_at = address + isa.INSTRUCTIONS["LOAD"].nbytes
    rig.write(scale_at, np.array([0x7F], "<u4"))               # the SCALE header: bad opcode
    rig.cores[0].launch(address, 0)
    rig.run()
    _check_fault(rig, ErrCode.BAD_OPCODE, scale_at)
