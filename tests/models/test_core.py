"""models.core: programs on a small board (HBM behind a router, CP, irq, error unit, 3 cores),
checked against vp.spec.numerics bit for bit, against the documented costs, and for every
error class."""

from __future__ import annotations

import time

import numpy as np
import pytest

from models.core import FETCH_BYTES, ROW_BATCH, Core
from models.core_sync import Cluster
from models.core_timing import ISSUE_CYCLES, CoreParams, gemm_cycles, op_cycles, vector_cycles
from models.cp import CommandProcessor
from models.error_unit import ErrorUnit
from models.irq import IRQ_BIT, InterruptController
from models.noc import Noc
from models.regblock import RegisterBlock
from vp.kernel import NS, SEC, US, MemoryTarget, Module, Payload, Response, Router, Simulator
from vp.spec import isa, memory_map
from vp.spec import numerics as nx
from vp.spec.regmap import REGMAP, ErrCode, ErrSource

HBM_BASE = 0x8000_0000
HBM_SIZE = 16 << 20
HBM_LATENCY = 50 * NS
HBM_BW = 16 * 10**9               # bytes/s
PROG = HBM_BASE + 0x10_0000       # programs live here (one per core, 64 KiB apart)
DATA = HBM_BASE + 0x40_0000
RING = HBM_BASE + 0x1000
CLOCK = 1_000_000_000             # 1 GHz: a cycle is 1000 ps
PARAMS = CoreParams(kind="unified", matrix_rows=4, matrix_cols=4, vector_lanes=8,
                    sram_bytes=64 << 10, sram_bytes_per_cycle=64, gemm_mode="ws", clock_hz=CLOCK)
WATCHDOG = 20 * US
CYCLE = SEC // CLOCK
ISSUE = ISSUE_CYCLES * CYCLE


class Hbm(MemoryTarget):
    """The kernel's reference memory, honouring the ``timing_only`` extension."""

    def _access(self, trans) -> bool:
        if trans.extensions.get("timing_only"):
            ok = self.store.check(trans.address, trans.length)
            trans.response = Response.OK if ok else Response.ADDRESS_ERROR
            return ok
        return super()._access(trans)


def mem_ps(nbytes: int, write: bool = False, noc: Noc | None = None, core: int = 0) -> int:
    """Annotated delay of one HBM transaction of a core (zero-load NoC when given)."""
    t = HBM_LATENCY + -(-nbytes * SEC // HBM_BW)
    if noc is not None:
        node = NODES[core]
        if write:
            t += noc.zero_load_ps(node, (0, 0), nbytes)
        else:
            t += noc.zero_load_ps(node, (0, 0), FLIT) + noc.zero_load_ps((0, 0), node, nbytes)
    return t


def sram_ps(nbytes: int) -> int:
    return -(-nbytes // PARAMS.sram_bytes_per_cycle) * CYCLE


NODES = [(1, 0), (2, 0), (1, 1)]  # mesh nodes of cores 0..2 (HBM and CP at (0, 0))
FLIT = 32


class Rig:
    """A small board: ``cores`` cores and a CP; HBM and the SRAM apertures behind a router
    (zero time) or, with ``noc``, a 3x2 mesh NoC."""

    def __init__(self, sim: Simulator, cores: int = 3, timing_only: bool = False,
                 params: CoreParams = PARAMS, noc: bool = False):
        self.sim = sim
        top = self.top = Module(sim, "board")
        self.irq = InterruptController(top, "irq")
        self.errors = ErrorUnit(top, "err", self.irq)
        self.hbm = Hbm("hbm", HBM_SIZE, latency_ps=HBM_LATENCY, bandwidth=HBM_BW)
        if noc:
            self.noc = Noc(top, "noc", mesh_x=3, mesh_y=2, router_cycles=2, link_cycles=1,
                           flit_bytes=FLIT, clock_hz=CLOCK)
            self.noc.map(HBM_BASE, HBM_SIZE, self.hbm.target_socket, (0, 0), "hbm")
            self.bus = None
            port = lambda node, name: self.noc.port(node, name)          # noqa: E731
            attach = lambda base, size, target, node, name: self.noc.map(  # noqa: E731
                base, size, target, node, name)
        else:
            self.bus = Router(top, "bus")
            self.bus.map(HBM_BASE, HBM_SIZE, self.hbm.target_socket, "hbm")
            port = lambda node, name: self.bus.target_socket                # noqa: E731
            attach = lambda base, size, target, node, name: self.bus.map(   # noqa: E731
                base, size, target, name)
        self.doorbells = RegisterBlock(REGMAP.block("db"))
        self.cp = CommandProcessor(top, "cp", irq=self.irq, errors=self.errors,
                                   doorbells=self.doorbells, mem_base=HBM_BASE, mem_size=HBM_SIZE,
                                   packet_ps=10 * NS, watchdog_ps=WATCHDOG)
        self.cp.socket.bind(port((0, 0), "cp"))
        self.cluster = Cluster(cp=self.cp, errors=self.errors, irq=self.irq, hbm_base=HBM_BASE,
                               hbm_size=HBM_SIZE)
        self.cores = [Core(top, f"core{i}", core_id=i, params=params, cluster=self.cluster,
                           timing_only=timing_only) for i in range(cores)]
        for c in self.cores:
            node = NODES[c.core_id]
            attach(memory_map.sram_base(c.core_id), params.sram_bytes, c.sram_socket, node,
                   f"sram{c.core_id}")
            c.socket.bind(port(node, f"core{c.core_id}"))
        self.cp.attach(self.cores, None)
        sim.settle()

    # -- memory helpers --------------------------------------------------------------------
    def write(self, address: int, data) -> None:
        self.hbm.store.write(address - HBM_BASE, np.frombuffer(np.ascontiguousarray(data).tobytes(),
                                                               np.uint8))

    def read(self, address: int, nbytes: int) -> np.ndarray:
        return self.hbm.store.read(address - HBM_BASE, nbytes)

    def program(self, core: int, prog: isa.Program, at: int | None = None) -> int:
        address = PROG + core * 0x1_0000 if at is None else at
        self.write(address, np.frombuffer(prog.to_bytes(), np.uint8))
        return address

    def launch(self, core: int, prog: isa.Program) -> int:
        address = self.program(core, prog)
        self.cores[core].launch(address, 0)
        return address

    def run(self, limit_ps: int = 10**10):
        self.sim.run_until_idle(limit_ps)

    def core_error_level(self) -> int:
        return self.irq.regs.hw_read("INT_RAW") >> IRQ_BIT["CORE_ERROR"] & 1

    # -- CP ring ----------------------------------------------------------------------------
    def submit(self, *packets: bytes, queue: int = 0) -> None:
        data = b"".join(packets)
        self.write(RING, np.frombuffer(data, np.uint8))
        self.sw(self.cp.regs, f"RING_BASE_LO[{queue}]", RING & 0xFFFF_FFFF)
        self.sw(self.cp.regs, f"RING_BASE_HI[{queue}]", RING >> 32)
        self.sw(self.cp.regs, f"RING_SIZE[{queue}]", 4096)
        ctrl = REGMAP.block("cp").reg(f"Q_CTRL[{queue}]")
        self.sw(self.cp.regs, f"Q_CTRL[{queue}]", ctrl.field("ENABLE").insert(0, 1))
        self.sw(self.doorbells, f"DOORBELL[{queue}]", len(data))

    @staticmethod
    def sw(block: RegisterBlock, reg: str, value: int) -> None:
        trans = Payload.write(block.block.reg(reg).offset, np.array([value], "<u4"))
        block.b_transport(trans, 0)
        assert trans.is_ok, (reg, trans)


@pytest.fixture
def sim():
    s = Simulator("core-test")
    yield s
    s.close()
    if Simulator._active is not None:
        Simulator._active.close()


@pytest.fixture
def rig(sim):
    return Rig(sim)


def rng(seed=0):
    return np.random.default_rng(seed)


def randn(r, *shape):
    return r.standard_normal(shape).astype(np.float32)


def load(p, hbm, sram, nbytes):
    p.LOAD(hbm=hbm, sram=sram, row_bytes=nbytes, rows=1, hbm_stride=nbytes, sram_stride=nbytes)


def store(p, hbm, sram, nbytes):
    p.STORE(hbm=hbm, sram=sram, row_bytes=nbytes, rows=1, hbm_stride=nbytes, sram_stride=nbytes)


def gemm_program(m, n, k):
    """LOAD A, LOAD B, GEMM, STORE C, END; A at DATA, B after it, C after B."""
    a_bytes, b_bytes, c_bytes = 4 * m * k, 4 * k * n, 4 * m * n
    p = isa.Program()
    load(p, DATA, 0, a_bytes)
    load(p, DATA + a_bytes, 0x4000, b_bytes)
    p.GEMM(m=m, n=n, k=k, a=0, b=0x4000, c=0x8000, scale=0, dtype_a="FP32", dtype_b="FP32")
    store(p, DATA + 0x10000, 0x8000, c_bytes)
    p.END()
    return p


def gemm_program_time(m, n, k, prog_bytes, noc=None):
    """The documented cost of gemm_program: fetch + per instruction (issue + cost)."""
    a_bytes, b_bytes, c_bytes = 4 * m * k, 4 * k * n, 4 * m * n
    fetch = mem_ps(FETCH_BYTES, noc=noc)
    assert prog_bytes <= FETCH_BYTES
    t_load_a = max(mem_ps(a_bytes, noc=noc), sram_ps(a_bytes))
    t_load_b = max(mem_ps(b_bytes, noc=noc), sram_ps(b_bytes))
    t_gemm = op_cycles(gemm_cycles(m, n, k, 4, 4, "ws"), a_bytes + b_bytes + c_bytes, 64) * CYCLE
    t_store = max(mem_ps(c_bytes, write=True, noc=noc), sram_ps(c_bytes))
    return fetch + 5 * ISSUE + t_load_a + t_load_b + t_gemm + t_store


# -- functional results and time ------------------------------------------------------------

@pytest.mark.parametrize("interconnect", ["router", "noc"])
def test_load_gemm_store_equals_numerics_and_takes_the_documented_time(sim, interconnect):
    rig = Rig(sim, noc=interconnect == "noc")
    m, n, k = 8, 12, 20
    r = rng(1)
    a, b = randn(r, m, k), randn(r, k, n)
    rig.write(DATA, a)
    rig.write(DATA + a.nbytes, b)
    prog = gemm_program(m, n, k)
    t0 = rig.sim.now
    rig.launch(0, prog)
    rig.run()
    core = rig.cores[0]
    assert not core.busy and core.error == 0
    c = rig.read(DATA + 0x10000, 4 * m * n).view(np.float32).reshape(m, n)
    assert np.array_equal(c, nx.gemm(a, b))
    assert rig.sim.now - t0 == gemm_program_time(m, n, k, prog.nbytes,
                                                 getattr(rig, "noc", None))
    cnt = core.counters()
    assert cnt["busy_ps"] + cnt["stall_ps"] == rig.sim.now - t0
    assert cnt["instructions"] == 5


def test_accumulate_over_k_tiles_equals_one_call_and_flags(rig):
    m, n, k, kt = 6, 10, 24, 8
    r = rng(2)
    a, b = randn(r, m, k), randn(r, k, n)
    core = rig.cores[0]
    p = isa.Program()
    # A stored transposed (k x m), B stored transposed (n x k): the tiles are contiguous rows
    rig.write(DATA, np.ascontiguousarray(a.T))
    rig.write(DATA + 0x1000, np.ascontiguousarray(b.T))
    load(p, DATA, 0, a.nbytes)
    load(p, DATA + 0x1000, 0x1000, b.nbytes)
    for t in range(k // kt):
        # tile t of A^T is rows t*kt.. of the (k x m) matrix; of B^T, columns: use a strided LOAD
        p.LOAD(hbm=DATA + 0x1000 + 4 * t * kt, sram=0x3000, row_bytes=4 * kt, rows=n,
               hbm_stride=4 * k, sram_stride=4 * kt)
        p.GEMM(m=m, n=n, k=kt, a=4 * t * kt * m, b=0x3000, c=0x8000, scale=0, dtype_a="FP32",
               dtype_b="FP32", accumulate=t > 0, trans_a=True, trans_b=True)
    store(p, DATA + 0x10000, 0x8000, 4 * m * n)
    p.END()
    rig.launch(0, p)
    rig.run()
    assert core.error == 0
    c = rig.read(DATA + 0x10000, 4 * m * n).view(np.float32).reshape(m, n)
    assert np.array_equal(c, nx.gemm(a, b))
    assert core.counters["macs_fp32"] == m * n * k


def test_gemm_bf16_and_int8_weights(rig):
    m, n, k = 4, 8, 16
    r = rng(3)
    a = nx.to_bf16(randn(r, m, k))
    b_bf = nx.to_bf16(randn(r, k, n))
    b_q = r.integers(-127, 128, (k, n)).astype(np.int8)
    s = (r.random(n) * 0.1).astype(np.float32)
    rig.write(DATA, a)
    rig.write(DATA + 0x1000, b_bf)
    rig.write(DATA + 0x2000, b_q)
    rig.write(DATA + 0x3000, s)
    p = isa.Program()
    load(p, DATA, 0, 0x4000)                           # everything at once
    p.GEMM(m=m, n=n, k=k, a=0, b=0x1000, c=0x8000, scale=0, dtype_a="BF16", dtype_b="BF16")
    p.GEMM(m=m, n=n, k=k, a=0, b=0x2000, c=0x9000, scale=0x3000, dtype_a="BF16", dtype_b="INT8")
    store(p, DATA + 0x10000, 0x8000, 0x2000)
    p.END()
    rig.launch(0, p)
    rig.run()
    out = rig.read(DATA + 0x10000, 0x2000).view(np.float32)
    assert np.array_equal(out[:m * n].reshape(m, n), nx.gemm(a, b_bf))
    assert np.array_equal(out[1024:1024 + m * n].reshape(m, n), nx.gemm(a, b_q, b_scale=s))
    cnt = rig.cores[0].counters
    assert (cnt["macs_bf16"], cnt["macs_int8"], cnt["macs_fp32"]) == (m * n * k, m * n * k, 0)


def test_every_vector_op_equals_numerics(rig):
    r = rng(4)
    rows, cols = 3, 16
    n = rows * cols
    x, y = randn(r, n), randn(r, n)
    gamma, beta = randn(r, cols), randn(r, cols)
    pos = np.array([5, 9, 100], np.int32)
    ids = np.array([2, 0, 3], np.int32)
    table = randn(r, 5, cols)
    rig.write(DATA, x)
    rig.write(DATA + 0x100, y)
    rig.write(DATA + 0x200, gamma)
    rig.write(DATA + 0x300, beta)
    rig.write(DATA + 0x400, pos)
    rig.write(DATA + 0x500, ids)
    rig.write(DATA + 0x1000, table)
    X, Y, G, B, P, I, OUT = 0, 0x100, 0x200, 0x300, 0x400, 0x500, 0x1000
    p = isa.Program()
    load(p, DATA, 0, 0x600)
    o = iter(range(OUT, OUT + 0x10000, 0x400))
    outs = {}

    def slot(name):
        outs[name] = next(o)
        return outs[name]

    p.ADD(n=n, a=X, b=Y, out=slot("add"))
    p.MUL(n=n, a=X, b=Y, out=slot("mul"))
    p.SCALE(n=n, a=X, out=slot("scale"), factor=0.125)
    p.GELU(n=n, a=X, out=slot("gelu"))
    p.SILU(n=n, a=X, out=slot("silu"))
    p.SOFTMAX(rows=rows, cols=cols, a=X, out=slot("softmax"), scale=0.5, pos0=3, causal=True)
    p.LAYERNORM(rows=rows, cols=cols, a=X, gamma=G, beta=B, out=slot("layernorm"), eps=1e-5)
    p.RMSNORM(rows=rows, cols=cols, a=X, gamma=G, out=slot("rmsnorm"), eps=1e-6)
    p.ROPE(rows=rows, heads=2, head_dim=8, a=X, out=slot("rope"), positions=P, theta=10000.0)
    p.EMBED(n=3, ids=I, table=DATA + 0x1000, row_bytes=4 * cols, out=slot("embed"))
    p.CONVERT(n=n, a=X, out=slot("bf16"), from_dtype="FP32", to_dtype="BF16", scale=1.0)
    p.CONVERT(n=n, a=X, out=slot("int8"), from_dtype="FP32", to_dtype="INT8", scale=0.02)
    store(p, DATA + 0x10000, OUT, 0x400 * len(outs))
    p.END()
    rig.launch(0, p)
    rig.run()
    assert rig.cores[0].error == 0
    got = {k: rig.read(DATA + 0x10000 + (v - OUT), 4 * n) for k, v in outs.items()}
    f = {k: v.view(np.float32) for k, v in got.items()}
    x2 = x.reshape(rows, cols)
    assert np.array_equal(f["add"], nx.add(x, y))
    assert np.array_equal(f["mul"], nx.mul(x, y))
    assert np.array_equal(f["scale"], nx.scale(x, 0.125))
    assert np.array_equal(f["gelu"], nx.gelu(x))
    assert np.array_equal(f["silu"], nx.silu(x))
    assert np.array_equal(f["softmax"].reshape(rows, cols),
                          nx.softmax(x2, scale=0.5, causal=True, pos0=3))
    assert np.array_equal(f["layernorm"].reshape(rows, cols), nx.layernorm(x2, gamma, beta, 1e-5))
    assert np.array_equal(f["rmsnorm"].reshape(rows, cols), nx.rmsnorm(x2, gamma, 1e-6))
    assert np.array_equal(f["rope"].reshape(rows, cols), nx.rope(x2, pos, 10000.0, head_dim=8))
    assert np.array_equal(f["embed"].reshape(3, cols), nx.embed(table, ids))
    assert np.array_equal(got["bf16"][:2 * n].view(np.uint16), nx.convert(x, "fp32", "bf16"))
    assert np.array_equal(got["int8"][:n].view(np.int8), nx.convert(x, "fp32", "int8", 0.02))


def test_vector_op_time_is_the_documented_cost(rig):
    n = 1000
    p = isa.Program()
    p.GELU(n=n, a=0, out=0x1000)
    p.END()
    t0 = rig.sim.now
    rig.launch(0, p)
    rig.run()
    cost = op_cycles(vector_cycles("GELU", n, 8), 8 * n, 64) * CYCLE
    assert rig.sim.now - t0 == mem_ps(FETCH_BYTES) + 2 * ISSUE + cost
    assert rig.cores[0].counters["vector_busy_ps"] == cost
    assert rig.cores[0].counters["vector_element_ops"] == 8 * n


# -- communication and synchronisation -------------------------------------------------------

@pytest.mark.parametrize("interconnect", ["router", "noc"])
def test_send_recv_moves_bytes_and_both_complete(sim, interconnect):
    rig = Rig(sim, noc=interconnect == "noc")
    data = np.arange(256, dtype=np.uint8)
    rig.write(DATA, data)
    p0 = isa.Program()
    load(p0, DATA, 0x100, 256)
    p0.SEND(core=1, sram=0x100, bytes=256, tag=7)
    p0.END()
    p1 = isa.Program()
    p1.SCALE(n=4000, a=0, out=0x8000, factor=1.0)            # arrive late at the RECV
    p1.RECV(core=0, sram=0x2000, bytes=256, tag=7)
    store(p1, DATA + 0x1000, 0x2000, 256)
    p1.END()
    t0 = rig.sim.now
    rig.launch(0, p0)
    rig.launch(1, p1)
    rig.run()
    c0, c1 = rig.cores[:2]
    assert (c0.busy, c0.error, c1.busy, c1.error) == (False, 0, False, 0)
    assert np.array_equal(rig.read(DATA + 0x1000, 256), data)
    assert c0.counters["stall_ps"] > 0                  # the sender waited for the RECV
    assert c0.counters["noc_sent_bytes"] == 256
    assert c1.counters["sram_write_bytes"] >= 256       # written through its SRAM port
    assert c1.counters["busy_ps"] + c1.counters["stall_ps"] == rig.sim.now - t0
    if interconnect == "noc":
        assert rig.noc.count["byte_hops"] >= 256 * rig.noc.hops(NODES[0], NODES[1])


def test_send_recv_byte_count_mismatch_faults_both(rig):
    p0 = isa.Program()
    p0.SEND(core=1, sram=0, bytes=64, tag=1)
    p0.END()
    p1 = isa.Program()
    p1.RECV(core=0, sram=0, bytes=32, tag=1)
    p1.END()
    rig.launch(0, p0)
    rig.launch(1, p1)
    rig.run()
    assert rig.cores[0].error == rig.cores[1].error == ErrCode.MALFORMED_PACKET


def test_barrier_releases_everyone_when_the_last_arrives(rig):
    ends = {}
    for i, work in enumerate((10, 1500, 300)):
        p = isa.Program()
        p.SCALE(n=8 * work, a=0, out=0, factor=1.0)
        p.BARRIER(core_mask=0b111)
        p.END()
        rig.launch(i, p)
    watch = []

    def observer():
        while any(c.busy for c in rig.cores):
            yield tuple(c.idle for c in rig.cores)
            for c in rig.cores:
                if not c.busy and c.core_id not in ends:
                    ends[c.core_id] = rig.sim.now
        watch.append(rig.sim.now)

    rig.sim.spawn(observer(), "observer")
    rig.run()
    assert all(c.error == 0 for c in rig.cores)
    assert len(set(ends.values())) == 1                # released together, END costs the same
    stalls = [c.counters["stall_ps"] for c in rig.cores]
    assert stalls[1] == 0 and stalls[0] > stalls[2] > 0


def test_semaphores_between_a_core_and_the_cp(rig):
    # the core signals sem 2 (awaited by the CP), then waits for sem 1 (signalled by the CP)
    p = isa.Program()
    p.SEM_SIGNAL(sem=2, value=3)
    p.SEM_WAIT(sem=1, value=1)
    p.END()
    address = rig.program(0, p)
    rig.submit(isa.encode_packet("LAUNCH", core_mask=1, program=address, arg=0),
               isa.encode_packet("SEM_WAIT", sem=2, value=3),
               isa.encode_packet("SEM_SIGNAL", sem=1, value=1),
               isa.encode_packet("WAIT_CORES", core_mask=1),
               isa.encode_packet("FENCE", value=42))
    rig.run()
    core = rig.cores[0]
    assert core.error == 0 and not core.busy
    assert rig.cp.regs.hw_read("FENCE[0]") == 42
    assert rig.cp.semaphore(1) == rig.cp.semaphore(2) == 0
    assert core.counters["stall_ps"] > 0


def test_cp_launch_and_wait_cores_use_the_core_handle(rig):
    p = gemm_program(4, 4, 4)
    address = rig.program(0, p)
    rig.submit(isa.encode_packet("LAUNCH", core_mask=0b11, program=address, arg=5),
               isa.encode_packet("WAIT_CORES", core_mask=0b11),
               isa.encode_packet("FENCE", value=1))
    rig.run()
    assert rig.cp.regs.hw_read("FENCE[0]") == 1
    assert [c.counters["instructions"] for c in rig.cores] == [5, 5, 0]
    assert rig.cp.regs.hw_read("CORES_BUSY_LO") == 0


# -- errors -----------------------------------------------------------------------------------

def _bad(op, **fields):
    def build(p):
        getattr(p, op)(**fields)
    return build


ERROR_CASES = {
    "sram_overflow": (ErrCode.SRAM_OVERFLOW,
                      _bad("ADD", n=1024, a=0, b=0, out=(64 << 10) - 1024)),
    "load_overflow": (ErrCode.SRAM_OVERFLOW,
                      _bad("LOAD", hbm=DATA, sram=(64 << 10) - 8, row_bytes=16, rows=1,
                           hbm_stride=16, sram_stride=16)),
    "misaligned": (ErrCode.MISALIGNED, _bad("GELU", n=4, a=2, out=0x100)),
    "misaligned_gemm_bf16": (ErrCode.MISALIGNED,
                             _bad("GEMM", m=2, n=2, k=2, a=1, b=0, c=0x100, scale=0,
                                  dtype_a="BF16", dtype_b="FP32")),
    "bad_core_send": (ErrCode.BAD_CORE, _bad("SEND", core=9, sram=0, bytes=4, tag=0)),
    "bad_core_recv": (ErrCode.BAD_CORE, _bad("RECV", core=3, sram=0, bytes=4, tag=0)),
    "bad_core_barrier": (ErrCode.BAD_CORE, _bad("BARRIER", core_mask=0b1001)),
    "barrier_without_self": (ErrCode.BAD_CORE, _bad("BARRIER", core_mask=0b110)),
    "desc_range_load": (ErrCode.DESC_RANGE,
                        _bad("LOAD", hbm=HBM_BASE + HBM_SIZE - 8, sram=0, row_bytes=16, rows=1,
                             hbm_stride=16, sram_stride=16)),
    "desc_range_store": (ErrCode.DESC_RANGE,
                         _bad("STORE", hbm=0x1000, sram=0, row_bytes=16, rows=1, hbm_stride=16,
                              sram_stride=16)),
    "desc_range_embed": (ErrCode.DESC_RANGE,
                         _bad("EMBED", n=1, ids=0x100, table=HBM_BASE + HBM_SIZE, row_bytes=64,
                              out=0x200)),
    "deadlock_recv": (ErrCode.DEADLOCK, _bad("RECV", core=1, sram=0, bytes=4, tag=0)),
    "deadlock_send": (ErrCode.DEADLOCK, _bad("SEND", core=2, sram=0, bytes=4, tag=0)),
    "deadlock_sem": (ErrCode.DEADLOCK, _bad("SEM_WAIT", sem=3, value=1)),
    "deadlock_barrier": (ErrCode.DEADLOCK, _bad("BARRIER", core_mask=0b011)),
    "bad_sem": (ErrCode.MALFORMED_PACKET, _bad("SEM_SIGNAL", sem=16, value=1)),
    "bad_dtype": (ErrCode.MALFORMED_PACKET,
                  _bad("GEMM", m=2, n=2, k=2, a=0, b=0, c=0x100, scale=0, dtype_a="INT8",
                       dtype_b="FP32")),
    "bad_rope": (ErrCode.MALFORMED_PACKET,
                 _bad("ROPE", rows=1, heads=1, head_dim=3, a=0, out=0x100, positions=0x200,
                      theta=1.0)),
}
RAW_CASES = {
    "bad_opcode": (ErrCode.BAD_OPCODE, np.array([0x0000_017E], "<u4")),           # opcode 0x7E
    "malformed": (ErrCode.MALFORMED_PACKET, np.array([0x0000_033F, 0, 0], "<u4")),  # END, 3 words
    "packet_in_program": (ErrCode.BAD_OPCODE, np.frombuffer(isa.encode_packet("NOP"), "<u4")),
}


def _check_fault(rig, code, address, core_id=0):
    core = rig.cores[core_id]
    assert not core.busy and core.error == code
    rec = rig.errors.last
    assert (rec.code, rec.source, rec.address, rec.syndrome) == (code, ErrSource.CORE, address,
                                                                core_id)
    assert rig.core_error_level() == 1
    assert rig.irq.regs.hw_read("INT_STATUS") >> IRQ_BIT["CORE_ERROR"] & 1


def _relaunch_ok(rig, core_id=0, others_in_error=False):
    """The core runs a good program afterwards and the CORE_ERROR level drops."""
    p = isa.Program()
    p.ADD(n=4, a=0, b=0, out=0x100)
    p.END()
    rig.launch(core_id, p)
    assert rig.core_error_level() == int(others_in_error)
    rig.run()
    core = rig.cores[core_id]
    assert core.error == 0 and not core.busy


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_error_classes(rig, case):
    code, build = ERROR_CASES[case]
    p = isa.Program()
    p.ADD(n=4, a=0, b=0, out=0x100)
    build(p)
    p.END()
    address = rig.program(0, p)
    idle_before = rig.cores[0].idle.fired_count
    rig.cores[0].launch(address, 0)
    rig.run()
    _check_fault(rig, code, address + isa.INSTRUCTIONS["ADD"].nbytes)
    assert rig.cores[0].idle.fired_count == idle_before + 1
    assert rig.cores[0].counters["instructions"] == 1
    if code == ErrCode.DEADLOCK:
        assert rig.cores[0].counters["stall_ps"] >= WATCHDOG
        assert rig.cluster.barriers.get(0b011, [0])[0] == 0      # the bit was taken back
    _relaunch_ok(rig)


@pytest.mark.parametrize("case", sorted(RAW_CASES))
def test_decode_errors(rig, case):
    code, words = RAW_CASES[case]
    ok = np.frombuffer(isa.encode_instruction("ADD", n=4, a=0, b=0, out=0x100), "<u4")
    address = PROG
    rig.write(address, np.concatenate([ok, words]))
    rig.cores[0].launch(address, 0)
    rig.run()
    _check_fault(rig, code, address + ok.nbytes)
    _relaunch_ok(rig)


def test_program_outside_hbm_and_misaligned_program(rig):
    rig.cores[0].launch(0x10, 0)
    rig.run()
    _check_fault(rig, ErrCode.DESC_RANGE, 0x10)
    rig.cores[1].launch(PROG + 2, 0)
    rig.run()
    _check_fault(rig, ErrCode.MISALIGNED, PROG + 2, core_id=1)
    _relaunch_ok(rig, 0, others_in_error=True)   # core 1 still holds its error
    _relaunch_ok(rig, 1)


def test_program_running_off_the_end_of_hbm_is_malformed(rig):
    # a GEMM header in the last word of HBM: the instruction crosses the end
    address = HBM_BASE + HBM_SIZE - 4
    rig.write(address, np.array([isa.INSTRUCTIONS["GEMM"].header()], "<u4"))
    rig.cores[0].launch(address, 0)
    rig.run()
    _check_fault(rig, ErrCode.MALFORMED_PACKET, address)


def test_instruction_straddling_a_fetch_block(rig):
    p = isa.Program()
    pad = (FETCH_BYTES - 8) // isa.INSTRUCTIONS["SEM_SIGNAL"].nbytes
    for _ in range(pad):
        p.SEM_SIGNAL(sem=0, value=0)
    p.GEMM(m=1, n=1, k=1, a=0, b=0, c=0x100, scale=0, dtype_a="FP32", dtype_b="FP32")
    p.END()
    rig.launch(0, p)
    rig.run()
    core = rig.cores[0]
    assert core.error == 0 and core.counters["instructions"] == pad + 2
    assert core.counters["fetch_bytes"] == 2 * FETCH_BYTES


def test_reset_stops_a_waiting_core_and_it_runs_again(rig):
    p = isa.Program()
    p.RECV(core=1, sram=0, bytes=4, tag=0)
    p.END()
    rig.launch(0, p)
    rig.sim.run(1 * US)
    core = rig.cores[0]
    assert core.busy
    core.reset()
    assert not core.busy and core.counters["instructions"] == 0
    _relaunch_ok(rig)
    rig.run()
    assert rig.errors.last is None               # the abandoned RECV never reports DEADLOCK


def test_large_contiguous_load_is_chunked(sim, monkeypatch):
    from dataclasses import replace
    import models.core
    chunk = 4 << 20                       # the logic, at a size this rig's memory holds
    monkeypatch.setattr(models.core, "CHUNK_BYTES", chunk)
    rig = Rig(sim, params=replace(PARAMS, sram_bytes=8 << 20))
    total = chunk + (1 << 20)
    data = rng(5).integers(0, 256, total, dtype=np.uint8)
    rig.write(DATA, data)
    p = isa.Program()
    load(p, DATA, 0, total)
    p.END()
    t0 = sim.now
    rig.launch(0, p)
    rig.run()
    core = rig.cores[0]
    assert core.error == 0 and np.array_equal(core.sram.view(0, total, np.uint8), data)
    # two transactions issued together; this rig's memory serves them in parallel
    cost = max(mem_ps(chunk), mem_ps(1 << 20), sram_ps(total))
    assert sim.now - t0 == mem_ps(FETCH_BYTES) + 2 * ISSUE + cost
    assert core.counters["load_store_ps"] == cost


def test_strided_load_runs_in_batches_of_rows(rig):
    rows = 2 * ROW_BATCH + 88
    src = rng(6).integers(0, 256, (rows, 32), dtype=np.uint8)
    rig.write(DATA, src)
    p = isa.Program()
    p.LOAD(hbm=DATA, sram=0, row_bytes=16, rows=rows, hbm_stride=32, sram_stride=16)
    p.END()
    t0 = rig.sim.now
    rig.launch(0, p)
    rig.run()
    core = rig.cores[0]
    assert core.error == 0
    assert np.array_equal(core.sram.view(0, 16 * rows, np.uint8).reshape(rows, 16), src[:, :16])
    cost = max(3 * mem_ps(16), sram_ps(16 * rows))        # three batches in series
    assert core.counters["load_store_ps"] == cost
    assert rig.sim.now - t0 == mem_ps(FETCH_BYTES) + 2 * ISSUE + cost
    assert core.counters["busy_ps"] == rig.sim.now - t0


# -- modes and counters -----------------------------------------------------------------------

def _mixed_program():
    m, n, k = 8, 8, 16
    p = isa.Program()
    load(p, DATA, 0, 4 * m * k)
    load(p, DATA + 0x1000, 0x1000, 4 * k * n)
    p.LOAD(hbm=DATA + 0x2000, sram=0x3000, row_bytes=64, rows=4, hbm_stride=256, sram_stride=64)
    p.GEMM(m=m, n=n, k=k, a=0, b=0x1000, c=0x2000, scale=0, dtype_a="FP32", dtype_b="FP32")
    p.GEMM(m=m, n=n, k=k, a=0, b=0x1000, c=0x2000, scale=0, dtype_a="FP32", dtype_b="FP32",
           accumulate=True)
    p.SOFTMAX(rows=m, cols=n, a=0x2000, out=0x2000, scale=1.0, pos0=0, causal=True)
    load(p, DATA + 0x3000, 0x4000, 8)
    p.EMBED(n=2, ids=0x4000, table=DATA + 0x8000, row_bytes=32, out=0x4100)
    p.SEND(core=1, sram=0x2000, bytes=4 * m * n, tag=3)
    store(p, DATA + 0x10000, 0x2000, 4 * m * n)
    p.END()
    q = isa.Program()
    q.RECV(core=0, sram=0, bytes=4 * m * n, tag=3)
    q.BARRIER(core_mask=0b110)
    q.END()
    r = isa.Program()
    r.RMSNORM(rows=4, cols=64, a=0, gamma=0x1000, out=0x2000, eps=1e-5)
    r.BARRIER(core_mask=0b110)
    r.END()
    return [p, q, r], (m, n, k)


def _run_mixed(sim, timing_only, noc=False):
    rig = Rig(sim, timing_only=timing_only, noc=noc)
    rig.write(DATA + 0x3000, np.array([0, 1], np.int32))
    progs, _ = _mixed_program()
    t0 = sim.now
    for i, p in enumerate(progs):
        rig.launch(i, p)
    rig.run()
    assert all(c.error == 0 and not c.busy for c in rig.cores)
    return rig, sim.now - t0


@pytest.mark.parametrize("interconnect", ["router", "noc"])
def test_performance_mode_same_time_no_sram(sim, interconnect):
    noc = interconnect == "noc"
    rig_f, t_f = _run_mixed(sim, False, noc)
    counters_f = [c.counters() for c in rig_f.cores]
    assert rig_f.cores[0].sram_allocated
    sim.close()
    sim2 = Simulator("perf")
    try:
        rig_p, t_p = _run_mixed(sim2, True, noc)
        assert t_p == t_f
        assert [c.counters() for c in rig_p.cores] == counters_f
        assert not any(c.sram_allocated for c in rig_p.cores)
    finally:
        sim2.close()


def test_counters_add_up(sim):
    rig, elapsed = _run_mixed(sim, True)
    _, (m, n, k) = _mixed_program()
    c0, c1, c2 = (c.counters() for c in rig.cores)
    assert c0["macs_fp32"] == 2 * m * n * k
    assert c0["hbm_read_bytes"] == 4 * m * k + 4 * k * n + 4 * 64 + 8 + 2 * 32
    assert c0["hbm_write_bytes"] == 4 * m * n
    assert c0["noc_sent_bytes"] == 4 * m * n
    assert c0["instructions"] == 11
    assert c1["sram_write_bytes"] == 4 * m * n
    for c in (c0, c1, c2):
        assert c["busy_ps"] + c["stall_ps"] <= elapsed
        assert c["busy_ps"] >= c["matrix_busy_ps"] + c["vector_busy_ps"] + c["load_store_ps"]
    # every core ran from launch (t=0) to its END: busy + stall covers it exactly
    assert max(c["busy_ps"] + c["stall_ps"] for c in (c0, c1, c2)) == elapsed
    assert c2["vector_element_ops"] == 4 * 64 * 5


# -- the SRAM as a target ----------------------------------------------------------------------

def test_sram_is_reachable_through_its_aperture(rig):
    base = memory_map.sram_base(2)
    trans = Payload.write(base + 0x40, np.arange(16, dtype=np.uint8))
    t = rig.bus.b_transport(trans, 0)
    assert trans.is_ok and t == sram_ps(16)
    back = Payload.read(base + 0x40, 16)
    assert rig.bus.transport_dbg(back) == 16
    assert np.array_equal(back.data, np.arange(16))
    region = rig.bus.get_direct_mem_ptr(Payload.read(base, 4))
    assert region is not None and region.start == base and region.end == base + (64 << 10) - 1
    assert region.data[0x40 + 3] == 3
    bad = Payload.read(base + (64 << 10) - 4, 8)
    rig.bus.b_transport(bad, 0)
    assert bad.response == Response.ADDRESS_ERROR


# -- speed ------------------------------------------------------------------------------------

def test_performance_mode_speed(sim):
    """Prints the wall time per instruction in performance mode (a loose bound guards it)."""
    rig = Rig(sim, cores=3, timing_only=True, noc=True)
    p = isa.Program()
    for i in range(600):
        load(p, DATA + 0x1000 * (i % 16), 0, 4096)
        p.GEMM(m=1, n=64, k=64, a=0, b=0x1000, c=0x8000, scale=0, dtype_a="BF16",
               dtype_b="INT8")
        p.RMSNORM(rows=1, cols=64, a=0x8000, gamma=0x1000, out=0x9000, eps=1e-5)
        p.SEM_SIGNAL(sem=0, value=0)
    p.END()
    address = rig.program(0, p)
    for c in rig.cores:
        c.launch(address, 0)
    t = time.perf_counter()
    sim.run(10 * 10**9)                # 10 ms of simulated time: far beyond the programs' end
    wall = time.perf_counter() - t
    assert not any(c.busy for c in rig.cores)
    n = sum(c.counters["instructions"] for c in rig.cores)
    print(f"\nperformance mode: {wall / n * 1e6:.1f} us per instruction ({n} instructions)")
    assert n == 3 * (4 * 600 + 1)
    assert wall / n < 200e-6


def test_gelu_erf_instruction_matches_the_numerics(rig):
    n = 96
    x = rng(21).standard_normal(n).astype(np.float32) * 3
    rig.write(DATA, x)
    p = isa.Program()
    load(p, DATA, 0, x.nbytes)
    p.GELU_ERF(n=n, a=0, out=0x1000)
    p.END()
    rig.launch(0, p)
    rig.run()
    core = rig.cores[0]
    assert core.error == 0
    assert np.array_equal(core.sram.view(0x1000, n, np.float32), nx.gelu_erf(x))
