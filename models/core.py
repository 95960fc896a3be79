"""A programmable core (CA, CF or unified): fetch, decode, execute; SRAM; matrix and vector
units; counters. One device; the formulas live in ``models/core_timing.py``, the shared
synchronisation state in ``models/core_sync.py``.

Programming model (instructions: docs/isa.md, docs/design/npu.md §5). The command processor's
``LAUNCH`` calls :meth:`Core.launch` with a program address in HBM. The core fetches the
program through its NoC port in blocks of ``FETCH_BYTES``, decodes each instruction and
executes it to completion, in order, until ``END``; then it is idle (``busy`` False, ``idle``
notified). SRAM operands are byte offsets in the core's own SRAM, which is also a TLM target
(``sram_socket``) at the core's SRAM aperture, so DMA engines and other cores reach it.

Timing: every instruction costs ``ISSUE_CYCLES`` plus its own cost, spent in simulated time:

* GEMM / vector ops: ``max(unit cycles, SRAM bytes / sram_bytes_per_cycle)`` (core_timing);
* LOAD / STORE / EMBED: ``max(the interconnect's and HBM's annotated delay, SRAM cycles)``; a
  contiguous transfer is one transaction per ``CHUNK_BYTES``, a strided one one per row, an
  EMBED one per id. Up to ``ROW_BATCH`` transactions are issued at once (the targets'
  busy-until bookkeeping serialises them); a longer transfer issues the next batch when the
  previous one has completed, so batches add up;
* SEND: the wait for the matching RECV, then the delivery's annotated delay; RECV: the wait
  until delivered; SEM_WAIT / BARRIER: the wait;
* program fetch: the annotated delay of each block read.

Errors stop the core (``error`` keeps the code) and report to the error unit (source CORE,
address = the faulting instruction's HBM address, syndrome = core id) and raise the CORE_ERROR
level (high while any core holds an error; cleared by a new launch or a reset):
SRAM_OVERFLOW (operand past the end of SRAM), MISALIGNED (operand not aligned to its element
size, or a program address not 4-aligned), BAD_CORE (SEND/RECV/BARRIER naming no core, or a
BARRIER mask without this core), BAD_OPCODE / MALFORMED_PACKET (decode; also bad dtype codes,
odd ROPE head_dim, SEND/RECV byte counts that differ, semaphore index out of range),
DESC_RANGE (LOAD/STORE/EMBED/fetch outside HBM), DEADLOCK (a wait the CP's watchdog expires).

Modes: functional (a dense ``numpy.uint8`` SRAM allocated on first use, ops through
``vp.spec.numerics``) or performance (``timing_only``: same decode, timing and counters, no
data, no SRAM; transactions carry the ``timing_only`` extension; EMBED then assumes ids
0..n-1, i.e. consecutive table rows).
"""

from __future__ import annotations

import functools
import struct

import numpy as np

from models.core_sync import Cluster, CoreFault as _Fault, RecvPost, Sram, SyncInstructions
from models.core_timing import (ISSUE_CYCLES, OPS_PER_ELEMENT as _OPS, CoreParams, gemm_bytes,
                                gemm_cycles, op_cycles, vector_bytes, vector_cycles)
from vp.kernel import Command, InitiatorSocket, Module, Payload, Response, TargetSocket
from vp.spec import isa, numerics
from vp.spec.regmap import ErrCode, ErrSource

FETCH_BYTES = 4096           # program fetch block
# Largest transaction of a contiguous LOAD/STORE. The NoC and HBM time a transaction of any size
# analytically, so larger chunks only save Python work; a functional chunk is a zero-copy view.
CHUNK_BYTES = 64 << 20
ROW_BATCH = 256              # transactions of one instruction in flight at once
# Decoded instructions by fetch block: block bytes -> {offset in block: isa.Decoded}. Decoding
# is a pure function of the bytes (every fetch still reads HBM and takes its time), so the
# program a core runs for every layer and token is decoded once, whichever core runs it.
# Bounded: cleared when it holds DECODE_CACHE_BLOCKS blocks (8 MiB of program text; a 70B
# decode step is 481 blocks).
_DECODED: dict[bytes, dict[int, "isa.Decoded"]] = {}
DECODE_CACHE_BLOCKS = 2048
# Static costs of compute instructions per core (see Core._compute), bounded the same way.
COST_CACHE_ENTRIES = 1 << 16
COUNTERS = ("instructions", "busy_ps", "matrix_busy_ps", "vector_busy_ps", "load_store_ps",
            "stall_ps", "fetch_ps", "macs_fp32", "macs_bf16", "macs_int8", "vector_element_ops",
            "sram_read_bytes", "sram_write_bytes", "hbm_read_bytes", "hbm_write_bytes",
            "fetch_bytes", "noc_sent_bytes")
_READ, _WRITE, _OK = Command.READ, Command.WRITE, Response.OK
_NO_DATA = np.empty(0, np.uint8)
_HEADER = struct.Struct("<I").unpack_from
_decode = isa.INSTRUCTIONS.decode
_F32, _I32 = np.dtype("<f4"), np.dtype("<i4")
_SIZE = {0: 4, 1: 2, 2: 1}                 # dtype code -> bytes
_STORAGE = numerics.STORAGE_DTYPE
_MAC_KIND = {(1, 1): "macs_bf16", (0, 2): "macs_int8", (1, 2): "macs_int8"}


class Counters(dict):
    """The core's counters, plain ints by name; calling it returns a plain copy."""

    def __call__(self) -> dict[str, int]:
        return dict(self)


#: The elementwise activations of the vector unit: opcode -> function of vp.spec.numerics (looked
#: up by name on each use, so that tools wrapping the numerics, e.g. vp.bench.e2e_split, see it).
_ACTIVATIONS = {"GELU": "gelu", "GELU_ERF": "gelu_erf", "SILU": "silu"}


class Core(SyncInstructions, Module):
    """One core. Times in ps, sizes in bytes; ``params`` from the board file."""

    def __init__(self, parent, name: str, *, core_id: int, params: CoreParams,
                 cluster: Cluster, timing_only: bool = False):
        super().__init__(parent, name)
        self.core_id, self.params, self.cluster = core_id, params, cluster
        self.timing_only = timing_only
        self.sram_bytes = params.sram_bytes
        self.socket = InitiatorSocket(f"{self.full_name}.port")
        self.idle = self.event("idle")          # END or fault: the CP's WAIT_CORES wakes
        self.mailbox = self.event("mailbox")    # a RECV posted here, or delivered here
        self._kick = self.event("kick")         # reset/launch: a stale wait wakes and quits
        self._issue_ps = params.ps(ISSUE_CYCLES)
        # Architectural state, plain data.
        self.busy = False
        self.error = 0                          # ErrCode of the last fault, 0 = none
        self.pc = self.program = self.arg = 0
        self.generation = 0                     # bumped by launch/reset: older runs abandon
        self.recv_posts: dict[tuple[int, int], RecvPost] = {}
        self.counters = Counters.fromkeys(COUNTERS, 0)
        bpc = params.sram_bytes_per_cycle
        # SRAM access time (ps) of n bytes; memoised: a program moves few distinct sizes.
        sram_ps = functools.lru_cache(maxsize=1024)(lambda n: params.ps(-(-n // bpc)))
        self.sram = Sram(params.sram_bytes, sram_ps, self.counters, timing_only)
        self.sram_socket = TargetSocket(f"{self.full_name}.sram", self.sram)
        self._mem, self._view = self.sram.mem, self.sram.view
        self._set_fetch_buffer(0, b"")
        self._costs: dict = {}                  # instruction -> (ps, counter charges)
        self._ops = dict.fromkeys(self._COST, self._compute)
        self._ops.update({"LOAD": self._load, "STORE": self._store, "SEND": self._send,
                          "RECV": self._recv, "EMBED": self._embed,
                          "SEM_SIGNAL": self._sem_signal, "SEM_WAIT": self._sem_wait,
                          "BARRIER": self._barrier, "END": lambda d: 0})
        cluster.add(self)

    # -- CoreHandle (what the command processor uses) ----------------------------------------
    def launch(self, program: int, arg: int) -> None:
        """Start the program at HBM address ``program`` (the core must be idle)."""
        if self.busy:
            raise RuntimeError(f"{self.full_name}: launched while busy (the CP waits for idle)")
        self.generation += 1
        self.busy, self.error = True, 0
        self.pc = self.program = program
        self.arg = arg
        self._set_fetch_buffer(0, b"")          # the program may have been rewritten
        self.cluster.update_error_irq()
        self._kick.notify()
        self.spawn(self._run(self.generation), "run")

    def reset(self) -> None:
        """Stop, forget the program, clear error and counters, notify ``idle`` (SRAM kept)."""
        self.generation += 1
        self._kick.notify()
        self.busy, self.error = False, 0
        self.pc = self.program = self.arg = 0
        self.recv_posts.clear()
        self._set_fetch_buffer(0, b"")
        self.cluster.barrier_leave(self.core_id)
        self.counters.update(dict.fromkeys(COUNTERS, 0))
        self.cluster.update_error_irq()
        self.idle.notify()

    # -- the instruction loop ---------------------------------------------------------------
    def _run(self, gen: int):
        ops, counters, cp, delay = self._ops, self.counters, self.cluster.cp, self.sim.delay
        issue_ps = self._issue_ps
        while True:
            pc = self.pc
            try:
                d = self._decoded.get(pc - self._fetch_base)
                if d is None:                    # not decoded from this block yet
                    d = yield from self._decode(pc, gen)
                    if d is None:                # abandoned during the fetch
                        return
                cost = ops[d.op](d)
                if cost.__class__ is not int:    # SEND/RECV/SEM_WAIT/BARRIER: they wait
                    cost = yield from cost
                    if self.generation != gen:
                        return
            except _Fault as fault:
                if self.generation == gen:
                    self._fault(fault.code)
                return
            cost += issue_ps
            yield delay(cost)
            if self.generation != gen:
                return
            counters["instructions"] += 1
            counters["busy_ps"] += cost
            cp.note_progress()
            if d.op == "END":
                self.busy = False
                self.idle.notify()
                cp.update_busy_cores()
                return
            self.pc = pc + d.nbytes

    def _decode(self, pc: int, gen: int):
        """Decode the instruction at ``pc``, first fetching its block unless the whole
        instruction (header: length_words) is in the fetch buffer. Returns None when the run
        was abandoned during the fetch."""
        off, buf = pc - self._fetch_base, self._fetch_buf
        if off < 0 or off + 4 > len(buf) or off + (_HEADER(buf, off)[0] >> 6 & 0x3FC) > len(buf):
            if pc & 3:
                raise _Fault(ErrCode.MISALIGNED)
            yield from self._fetch(pc, gen)
            if self.generation != gen:
                return None
            buf, off = self._fetch_buf, 0
            d = self._decoded.get(0)             # this block was decoded before
            if d is not None:
                return d
        try:
            d = _decode(buf, off)
        except isa.DecodeError as exc:
            raise _Fault(ErrCode[exc.cause]) from None
        self._decoded[off] = d
        return d

    def _fetch(self, pc: int, gen: int):
        """Read the block of program at ``pc`` into the fetch buffer, taking its time."""
        cluster = self.cluster
        if not cluster.hbm_range(pc, 4):
            raise _Fault(ErrCode.DESC_RANGE)
        nbytes = min(FETCH_BYTES, cluster.hbm_end - pc)
        trans = Payload.read(pc, nbytes)
        t = self.socket.b_transport(trans, 0)
        if trans.response is not _OK:
            raise _Fault(ErrCode.DESC_RANGE)
        yield self.sim.delay(t)
        if self.generation == gen:
            self._set_fetch_buffer(pc, trans.data.tobytes())
            c = self.counters
            c["fetch_ps"] += t
            c["busy_ps"] += t
            c["fetch_bytes"] += nbytes

    def _set_fetch_buffer(self, base: int, block: bytes) -> None:
        """The fetch buffer now holds ``block`` (program bytes from HBM address ``base``)."""
        self._fetch_base, self._fetch_buf = base, block
        decoded = _DECODED.get(block)
        if decoded is None:
            if len(_DECODED) >= DECODE_CACHE_BLOCKS:
                _DECODED.clear()
            decoded = _DECODED[block] = {}
        self._decoded = decoded

    def _fault(self, code: ErrCode) -> None:
        self.busy, self.error = False, int(code)
        self.recv_posts.clear()
        self.cluster.barrier_leave(self.core_id)
        self.cluster.errors.report(code, ErrSource.CORE, self.pc, self.core_id)
        self.cluster.update_error_irq()
        self.idle.notify()
        self.cluster.cp.update_busy_cores()

    # -- SRAM operands ------------------------------------------------------------------------
    def _check(self, offset: int, nbytes: int, align: int) -> None:
        if offset % align:
            raise _Fault(ErrCode.MISALIGNED)
        if offset + nbytes > self.sram_bytes:
            raise _Fault(ErrCode.SRAM_OVERFLOW)

    # -- data movement -------------------------------------------------------------------------
    def _transact(self, command: Command, address: int, offset: int, nbytes: int) -> int:
        """One transaction at a system address, data = the SRAM bytes at ``offset``; returns
        its annotated delay (ps), or faults DESC_RANGE when the interconnect refuses it."""
        if self.timing_only:
            trans = Payload(command, address, _NO_DATA)
            trans.length = trans.streaming_width = nbytes
            trans.extensions["timing_only"] = True
        else:
            trans = Payload(command, address, self._mem()[offset:offset + nbytes])
        t = self.socket.b_transport(trans, 0)
        if trans.response is not _OK:
            raise _Fault(ErrCode.DESC_RANGE)
        return t

    def _transfer(self, command: Command, piece, count: int, floor_ps: int):
        """Issue ``count`` transactions ``piece(i) -> (address, sram offset, bytes)``, up to
        ``ROW_BATCH`` in flight: each batch is issued at once (targets serialise it), the next
        when the previous one has completed. The cost is at least ``floor_ps``. Returns the
        cost (ps), or for more than one batch a generator that spends all but the last."""
        if count <= ROW_BATCH:
            ps = max(floor_ps, self._batch(command, piece, 0, count))
            self.counters["load_store_ps"] += ps
            return ps
        return self._batches(command, piece, count, floor_ps)

    def _batch(self, command: Command, piece, i0: int, i1: int) -> int:
        t, transact = 0, self._transact
        for i in range(i0, i1):
            t = max(t, transact(command, *piece(i)))
        return t

    def _batches(self, command: Command, piece, count: int, floor_ps: int):
        # Why batches: a strided transfer of millions of rows must not block the simulation
        # (the host can still run, reset and observe the board between batches).
        gen, spent = self.generation, 0
        last = (count - 1) // ROW_BATCH * ROW_BATCH
        for i0 in range(0, last, ROW_BATCH):
            t = self._batch(command, piece, i0, i0 + ROW_BATCH)
            yield self.sim.delay(t)
            if self.generation != gen:
                return 0
            spent += t
            self.counters["busy_ps"] += t
        ps = max(floor_ps, spent + self._batch(command, piece, last, count))
        self.counters["load_store_ps"] += ps
        return ps - spent

    def _move(self, d, command: Command):
        hbm, sram, row_bytes, rows, hbm_stride, sram_stride = d[1:7]
        total = row_bytes * rows
        if total == 0:
            return 0
        if sram + (rows - 1) * sram_stride + row_bytes > self.sram_bytes:   # _check, inline
            raise _Fault(ErrCode.SRAM_OVERFLOW)
        cluster = self.cluster                  # hbm_range, inline
        if not (cluster.hbm_base <= hbm
                and hbm + (rows - 1) * hbm_stride + row_bytes <= cluster.hbm_end):
            raise _Fault(ErrCode.DESC_RANGE)
        c = self.counters
        if command is _READ:
            c["hbm_read_bytes"] += total
            c["sram_write_bytes"] += total
        else:
            c["hbm_write_bytes"] += total
            c["sram_read_bytes"] += total
        floor = self.sram.access_ps(total)      # the SRAM side's cycles
        if rows == 1 or (hbm_stride == row_bytes and sram_stride == row_bytes):
            if total <= CHUNK_BYTES:            # the common case: one transaction
                ps = max(floor, self._transact(command, hbm, sram, total))
                c["load_store_ps"] += ps
                return ps
            return self._transfer(command, lambda i: (hbm + i * CHUNK_BYTES, sram + i * CHUNK_BYTES,
                                                      min(CHUNK_BYTES, total - i * CHUNK_BYTES)),
                                  -(-total // CHUNK_BYTES), floor)
        return self._transfer(command, lambda i: (hbm + i * hbm_stride, sram + i * sram_stride,
                                                  row_bytes), rows, floor)

    def _load(self, d):
        return self._move(d, _READ)

    def _store(self, d):
        return self._move(d, _WRITE)

    def _embed(self, d):
        n, ids, table, row_bytes, out = d[1:6]
        if n == 0 or row_bytes == 0:
            return 0
        self._check(ids, 4 * n, 4)
        self._check(out, n * row_bytes, 1)
        if self.timing_only:                    # no ids: rows 0..n-1 are assumed
            rows, lo, hi = None, 0, n - 1
        else:
            rows = self._view(ids, n, _I32).tolist()
            lo, hi = min(rows), max(rows)
        if lo < 0 or not self.cluster.hbm_range(table + lo * row_bytes,
                                                (hi - lo + 1) * row_bytes):
            raise _Fault(ErrCode.DESC_RANGE)
        p, c = self.params, self.counters
        c["hbm_read_bytes"] += n * row_bytes
        c["vector_element_ops"] += n * _OPS["EMBED"]
        c["sram_read_bytes"] += 4 * n
        c["sram_write_bytes"] += n * row_bytes
        floor = p.ps(op_cycles(vector_cycles("EMBED", n, p.vector_lanes),
                               vector_bytes("EMBED", -(-n * row_bytes // 4), rows=n),
                               p.sram_bytes_per_cycle))
        if rows is None:
            return self._transfer(_READ, lambda i: (table + i * row_bytes, out + i * row_bytes,
                                                    row_bytes), n, floor)
        return self._transfer(_READ, lambda i: (table + rows[i] * row_bytes, out + i * row_bytes,
                                                row_bytes), n, floor)

    # -- compute instructions ---------------------------------------------------------------
    def _compute(self, d) -> int:
        """GEMM and the vector instructions. Their operand checks and cost depend on the
        instruction alone, so they run once per distinct instruction (a fault is raised every
        time, never cached); the data op runs every time (functional mode). Returns ps."""
        cost = self._costs.get(d)
        if cost is None:
            cost = self._COST[d.op](self, d)     # checks operands: may fault
            if len(self._costs) >= COST_CACHE_ENTRIES:
                self._costs.clear()
            self._costs[d] = cost
        if not self.timing_only:
            self._DATA[d.op](self, d)
        ps, charges = cost
        c = self.counters
        for key, amount in charges:
            c[key] += amount
        return ps

    def _cost(self, unit: str, unit_cycles: int, sram_read: int, sram_write: int,
              work: tuple[str, int]) -> tuple[int, tuple]:
        """(ps, counter charges) of a compute op: its unit's cycles, at least its SRAM
        traffic's cycles; ``work`` = (counter, amount) of the operations done."""
        p = self.params
        ps = p.ps(op_cycles(unit_cycles, sram_read + sram_write, p.sram_bytes_per_cycle))
        return ps, (work, (unit, ps), ("sram_read_bytes", sram_read),
                    ("sram_write_bytes", sram_write))

    def _vector_cost(self, op: str, elements: int, sram_bytes: int,
                     written: int) -> tuple[int, tuple]:
        return self._cost("vector_busy_ps", vector_cycles(op, elements, self.params.vector_lanes),
                          sram_bytes - written, written, ("vector_element_ops", elements * _OPS[op]))

    # -- matrix unit ----------------------------------------------------------------------------
    def _gemm_cost(self, d) -> tuple[int, tuple]:
        m, n, k, a, b, c, scale, da, db = d[1:10]
        if da not in (0, 1) or db not in _SIZE:
            raise _Fault(ErrCode.MALFORMED_PACKET)
        sa, sb, scaled = _SIZE[da], _SIZE[db], db == 2
        self._check(a, m * k * sa, sa)
        self._check(b, k * n * sb, sb)
        self._check(c, m * n * 4, 4)
        if scaled:
            self._check(scale, 4 * n, 4)
        p, written = self.params, m * n * 4
        return self._cost("matrix_busy_ps",
                          gemm_cycles(m, n, k, p.matrix_rows, p.matrix_cols, p.gemm_mode),
                          gemm_bytes(m, n, k, sa, sb, d.accumulate, scaled) - written, written,
                          (_MAC_KIND.get((da, db), "macs_fp32"), m * n * k))

    def _gemm_data(self, d) -> None:
        m, n, k, a, b, c, scale, da, db = d[1:10]
        if m and n:
            ta, tb = d.trans_a, d.trans_b
            A = self._view(a, m * k, _STORAGE[da]).reshape((k, m) if ta else (m, k))
            B = self._view(b, k * n, _STORAGE[db]).reshape((n, k) if tb else (k, n))
            C = self._view(c, m * n, _F32).reshape(m, n)
            C[...] = numerics.gemm(A, B, C if d.accumulate else None, trans_a=ta, trans_b=tb,
                                   b_scale=self._view(scale, n, _F32) if db == 2 else None)

    # -- vector unit ----------------------------------------------------------------------------
    def _binary_cost(self, d) -> tuple[int, tuple]:
        n, a, b, out = d[1:5]
        for off in (a, b, out):
            self._check(off, 4 * n, 4)
        return self._vector_cost(d.op, n, vector_bytes(d.op, n), 4 * n)

    def _binary_data(self, d) -> None:
        n, a, b, out = d[1:5]
        if n:
            fn = numerics.add if d.op == "ADD" else numerics.mul
            self._view(out, n, _F32)[:] = fn(self._view(a, n, _F32), self._view(b, n, _F32))

    def _unary_cost(self, d) -> tuple[int, tuple]:
        n, a, out = d[1:4]
        self._check(a, 4 * n, 4)
        self._check(out, 4 * n, 4)
        return self._vector_cost(d.op, n, vector_bytes(d.op, n), 4 * n)

    def _unary_data(self, d) -> None:
        n, a, out = d[1:4]
        if n:
            x = self._view(a, n, _F32)
            y = numerics.scale(x, d[4]) if d.op == "SCALE" \
                else getattr(numerics, _ACTIVATIONS[d.op])(x)
            self._view(out, n, _F32)[:] = y

    def _softmax_cost(self, d) -> tuple[int, tuple]:
        rows, cols, a, out = d[1:5]
        n = rows * cols
        self._check(a, 4 * n, 4)
        self._check(out, 4 * n, 4)
        return self._vector_cost("SOFTMAX", n, vector_bytes("SOFTMAX", n), 4 * n)

    def _softmax_data(self, d) -> None:
        rows, cols, a, out, scale, pos0 = d[1:7]
        n = rows * cols
        if n:
            x = self._view(a, n, _F32).reshape(rows, cols)
            self._view(out, n, _F32)[:] = numerics.softmax(
                x, scale=scale, causal=d.causal, pos0=pos0).reshape(-1)

    def _norm_operands(self, d) -> tuple:
        """(rows, cols, a, gamma, beta or None, out, eps) of LAYERNORM / RMSNORM."""
        if d.op == "LAYERNORM":
            return d[1:8]
        rows, cols, a, gamma, out, eps = d[1:7]
        return rows, cols, a, gamma, None, out, eps

    def _norm_cost(self, d) -> tuple[int, tuple]:
        rows, cols, a, gamma, beta, out, _eps = self._norm_operands(d)
        n = rows * cols
        for off, count in ((a, n), (out, n), (gamma, cols)) + \
                (((beta, cols),) if beta is not None else ()):
            self._check(off, 4 * count, 4)
        return self._vector_cost(d.op, n, vector_bytes(d.op, n, cols=cols), 4 * n)

    def _norm_data(self, d) -> None:
        rows, cols, a, gamma, beta, out, eps = self._norm_operands(d)
        n = rows * cols
        if n:
            x, g = self._view(a, n, _F32).reshape(rows, cols), self._view(gamma, cols, _F32)
            y = numerics.layernorm(x, g, self._view(beta, cols, _F32), eps) \
                if beta is not None else numerics.rmsnorm(x, g, eps)
            self._view(out, n, _F32)[:] = y.reshape(-1)

    def _rope_cost(self, d) -> tuple[int, tuple]:
        rows, heads, head_dim, a, out, positions = d[1:7]
        if head_dim == 0 or head_dim % 2:
            raise _Fault(ErrCode.MALFORMED_PACKET)
        n = rows * heads * head_dim
        self._check(a, 4 * n, 4)
        self._check(out, 4 * n, 4)
        self._check(positions, 4 * rows, 4)
        return self._vector_cost("ROPE", n, vector_bytes("ROPE", n, rows=rows), 4 * n)

    def _rope_data(self, d) -> None:
        rows, heads, head_dim, a, out, positions, theta = d[1:8]
        n = rows * heads * head_dim
        if n:
            x = self._view(a, n, _F32).reshape(rows, heads * head_dim)
            self._view(out, n, _F32)[:] = numerics.rope(
                x, self._view(positions, rows, _I32), theta, head_dim=head_dim).reshape(-1)

    def _convert_cost(self, d) -> tuple[int, tuple]:
        n, a, out, src, dst = d[1:6]
        if src not in _SIZE or dst not in _SIZE or {src, dst} == {1, 2}:
            raise _Fault(ErrCode.MALFORMED_PACKET)
        self._check(a, n * _SIZE[src], _SIZE[src])
        self._check(out, n * _SIZE[dst], _SIZE[dst])
        return self._vector_cost("CONVERT", n, vector_bytes("CONVERT", n, in_bytes=_SIZE[src],
                                                            out_bytes=_SIZE[dst]),
                                 n * _SIZE[dst])

    def _convert_data(self, d) -> None:
        n, a, out, src, dst, scale = d[1:7]
        if n:
            self._view(out, n, _STORAGE[dst])[:] = numerics.convert(
                self._view(a, n, _STORAGE[src]), src, dst, scale)

    #: Compute opcode -> (cost and checks, data op), as unbound methods.
    _COST = {"GEMM": _gemm_cost, "ADD": _binary_cost, "MUL": _binary_cost,
             "SCALE": _unary_cost, "GELU": _unary_cost, "GELU_ERF": _unary_cost,
             "SILU": _unary_cost, "SOFTMAX": _softmax_cost, "LAYERNORM": _norm_cost,
             "RMSNORM": _norm_cost, "ROPE": _rope_cost, "CONVERT": _convert_cost}
    _DATA = {"GEMM": _gemm_data, "ADD": _binary_data, "MUL": _binary_data,
             "SCALE": _unary_data, "GELU": _unary_data, "GELU_ERF": _unary_data,
             "SILU": _unary_data, "SOFTMAX": _softmax_data, "LAYERNORM": _norm_data,
             "RMSNORM": _norm_data, "ROPE": _rope_data, "CONVERT": _convert_data}

    @property
    def sram_allocated(self) -> bool:
        """True once the functional SRAM array exists (never in performance mode)."""
        return self.sram.allocated
