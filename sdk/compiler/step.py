"""Lowering one step (a prefill, a decode step or an encoder pass) to core programs and a
command stream.

A *step* runs the new tokens of a batch of sequences through the whole model: the sequences
are split into micro-batches, each a list of :class:`Segment` (one sequence's new tokens).
Every active core gets one program for the whole step; the command stream is
``TIMESTAMP, LAUNCH × cores, WAIT_CORES, TIMESTAMP`` (the timestamps bracket the step in
simulated time).

Work items and phases
    *Dense items* ``D(l, mb)``: the context-free work between two attentions of micro-batch
    ``mb`` (the output projection and FFN of layer ``l - 1``, then the norm and QKV projection
    of layer ``l``; ``D(0)`` starts with the embedding, ``D(L)`` ends with the final norm and
    LM head, or with mean pooling for an encoder). *Attention items* ``A(l, mb)``. Items run in
    *phases* separated by a ``BARRIER`` of every active core. With the ``afd`` placement and
    two or more micro-batches, phase ``t`` runs dense item ``t`` on the CF cores while the CA
    cores run attention item ``t - 1``: micro-batch ping-pong (dense item ``t`` needs attention
    item ``t - M``, finished ``M - 1`` phases earlier). Otherwise (``unified``, or one
    micro-batch) the items alternate, one per phase.

Inside a dense item, stages (embedding, norm passes, linears, pooling) exchange rows through
HBM buffers and are separated by a ``BARRIER`` of the dense cores. Linears split output
columns over the dense cores (:mod:`sdk.compiler.plan`); row-wise passes split rows. Attention
splits (sequence, KV head) units over the attention cores in contiguous runs; each unit loads
its keys and values from the paged KV cache, and per query head runs ``GEMM q·Kᵀ``, a causal
``SOFTMAX`` over the visible prefix and ``GEMM P·V``: the reference's numerics
(``sdk/reference.py``) exactly. A core's heads of a sequence decoding one token go together
(one load of queries, keys and values, one SOFTMAX, one store).

What stays in a dense core's SRAM for the whole step, from offset 0: the resident weight
tiles (:attr:`Plan.resident`, loaded by the first step of a call and kept by the later ones),
a window of the norms (all of them for a small model: one load per step), and its columns of
the residual stream between the output and down projections (no load back).

Fewer instructions for the host to encode: each stage's code on every core is a *fragment*
encoded once and reused by later steps whose key (layer, micro-batch, rows, SRAM layout,
and for KV writes and attention the positions and blocks) is the same.

Host-side code: imports only ``vp.spec`` and the SDK.
"""

from __future__ import annotations

import numpy as np

from sdk.compiler.attention import AttentionStages
from sdk.compiler.plan import F32, PROGRAM_SLOT, Linear, Plan, Tile, split
from sdk.compiler.program import (SRAM_ALIGN, CoreEmitter, CoreProgram, Segment,
                                  StepProgram, segment_key)
from sdk.compiler.target import CompileError
from vp.spec import isa

_DT = {"fp32": "FP32", "bf16": "BF16", "int8": "INT8"}
_WB = {"fp32": 4, "bf16": 2, "int8": 1}


#: Fragments kept for reuse by one compiler (cleared when full; a GPT-2-small decode step
#: adds about 25, the step's KV writes and attention, and reuses the rest).
MEMO_LIMIT = 4096


class StepCompiler(AttentionStages):
    """Compiles steps for one :class:`Plan` (reusable: one per session).

    Code that does not change from one step to the next (most of a decode step: every
    projection, norm and the LM head) is encoded once: each stage's instructions on every
    core are kept as a *fragment* keyed by what they depend on and reused by later steps;
    only the KV-cache writes and the attention, which follow the positions, are encoded
    again."""

    def __init__(self, plan: Plan):
        self.plan, self.cfg, self.target = plan, plan.config, plan.target
        self.dense_mask = self.target.mask(self.target.dense)
        self.all_mask = self.target.mask(self.target.active)
        self._memo: dict[tuple, dict[int, tuple[bytes, int]]] = {}
        self.fragments_reused = self.fragments_encoded = 0
        # The norm window: all of the model's norms when they take little SRAM (one LOAD per
        # step), else the (adjacent) norms of one dense item at a time.
        self._norm_window = plan.norm_window
        # SRAM from 0: the resident weight tiles (the same size on every dense core), the
        # norm window, the residual columns (their size depends on the step's rows)
        self._window_at = -(-max(plan.resident_bytes.values(), default=0) // SRAM_ALIGN) \
            * SRAM_ALIGN
        self._resident_loaded = False

    # -- entry point --------------------------------------------------------------------------
    def compile(self, micro_batches: list[list[Segment]], *,
                resident_loaded: bool = False) -> StepProgram:
        """Programs for the segments of each micro-batch (at most ``plan.micro_batches``).

        ``resident_loaded``: the dense cores' SRAM still holds the resident weight tiles
        (:attr:`Plan.resident`) as an earlier step of this plan left them (nothing else ran
        on the cores since): the step uses them without loading them. Otherwise the step
        loads them there (and uses them)."""
        plan, cfg = self.plan, self.cfg
        self._resident_loaded = resident_loaded
        if len(micro_batches) > plan.micro_batches:
            raise CompileError(f"{len(micro_batches)} micro-batches, the plan has "
                               f"{plan.micro_batches}")
        self.cores = {cid: CoreEmitter(self.target.core(cid)) for cid in self.target.active}
        self.mbs = micro_batches + [[] for _ in range(plan.micro_batches - len(micro_batches))]
        base = self._plan_residents()
        for cid in self.target.dense:
            self.cores[cid].base = self.cores[cid].top = base
        inputs = []
        for mb, segs in enumerate(self.mbs):
            for row, s in enumerate(segs):
                s.row = row                     # its output row in the micro-batch
            self._check_segments(mb, segs)
            if not segs:
                continue
            buf = plan.buffers[mb]
            ids = np.concatenate([s.ids for s in segs]).astype(np.int32)
            pos = np.concatenate([np.arange(s.pos0, s.pos0 + s.T) for s in segs]).astype(np.int32)
            inputs += [(buf["ids"], ids), (buf["pos"], pos)]
            if cfg.arch == "bert":
                types = np.concatenate([s.types if s.types is not None else np.zeros(s.T)
                                        for s in segs]).astype(np.int32)
                inputs.append((buf["types"], types))
        if len(self._memo) > MEMO_LIMIT:
            self._memo.clear()
        self._schedule()
        for c in self.cores.values():
            c.emit("END")
        packets = [isa.encode_packet("TIMESTAMP", address=plan.timestamps)]
        addresses = {}
        for cid, c in self.cores.items():
            addresses[cid] = plan.programs[cid]
            packets.append(isa.encode_packet("LAUNCH", core_mask=1 << cid,
                                             program=plan.programs[cid], arg=0))
        packets += [isa.encode_packet("WAIT_CORES", core_mask=self.all_mask),
                    isa.encode_packet("TIMESTAMP", address=plan.timestamps + 8)]
        self._check_program_sizes()
        out_rows = [(mb, len(segs), plan.buffers[mb]["out"]) for mb, segs in enumerate(self.mbs)
                    if segs]
        return StepProgram({cid: c.p for cid, c in self.cores.items()}, addresses, packets,
                           inputs, out_rows, plan.timestamps,
                           sum(len(c.p) for c in self.cores.values()))

    def _check_program_sizes(self) -> None:
        for cid, c in self.cores.items():
            if c.p.nbytes > PROGRAM_SLOT:
                raise CompileError(f"core {cid}: the step's program is {c.p.nbytes} bytes, "
                                   f"more than its {PROGRAM_SLOT}-byte slot (fewer tokens per "
                                   f"step)")

    def _check_segments(self, mb: int, segs: list[Segment]) -> None:
        plan, r = self.plan, 0
        for s in segs:
            if s.T < 1:
                raise CompileError("a segment needs at least one token")
            if s.pos0 + s.T > plan.max_context:
                raise CompileError(f"{s.pos0 + s.T} positions exceed the planned context of "
                                   f"{plan.max_context}")
            if len(s.blocks) * plan.page_tokens < s.pos0 + s.T:
                raise CompileError(f"a sequence at {s.pos0 + s.T} positions has only "
                                   f"{len(s.blocks)} KV blocks of {plan.page_tokens}")
            s.r0, r = r, r + s.T
        if r > plan.max_step_tokens:
            raise CompileError(f"micro-batch {mb} has {r} new tokens, more than the planned "
                               f"{plan.max_step_tokens} per step")
        if len(segs) > plan.mb_batch:
            raise CompileError(f"micro-batch {mb} has {len(segs)} sequences, more than the "
                               f"planned {plan.mb_batch}")

    # -- fragments ----------------------------------------------------------------------------
    def _fragment(self, key: tuple, emit) -> None:
        """Run ``emit()`` (which appends instructions to any cores' programs) or, when a
        fragment of the same ``key`` was encoded before, append its bytes again. ``key``
        must name everything the instructions depend on."""
        # where stages allocate from; whether the resident tiles are loaded
        key += (self.cores[self.target.dense[0]].base, self._resident_loaded)
        hit = self._memo.get(key)
        cores = self.cores
        if hit is not None:
            self.fragments_reused += 1
            for cid, (data, n) in hit.items():
                cores[cid].p.add(data, n)
            return
        marks = {cid: (len(c.p.parts), c.p.count) for cid, c in cores.items()}
        emit()
        hit = {}
        for cid, c in cores.items():
            n0, k0 = marks[cid]
            if c.p.count > k0:
                data = b"".join(c.p.parts[n0:])
                c.p.parts[n0:] = [data]
                hit[cid] = (data, c.p.count - k0)
        self._memo[key] = hit
        self.fragments_encoded += 1

    def _pages(self, s: Segment) -> int:
        """KV blocks the segment's positions 0..pos0+T-1 occupy."""
        return -(-(s.pos0 + s.T) // self.plan.page_tokens)

    # -- phases -------------------------------------------------------------------------------
    def _barrier(self, ids, mask: int) -> None:
        for cid in ids:
            self.cores[cid].emit("BARRIER", core_mask=mask)

    def _schedule(self) -> None:
        L, M = self.cfg.n_layers, self.plan.micro_batches
        dense = [(l, mb) for l in range(L + 1) for mb in range(M)]
        attn = [(l, mb) for l in range(L) for mb in range(M)]
        active = self.target.active
        if self.target.disaggregated and M >= 2:
            for t in range(len(dense) + 1):
                if t < len(dense):
                    self._dense_item(*dense[t])
                if 0 <= t - 1 < len(attn):
                    self._attention_item(*attn[t - 1])
                if t < len(dense):
                    self._barrier(active, self.all_mask)
            return
        for l in range(L + 1):
            for mb in range(M):
                self._dense_item(l, mb)
                self._barrier(active, self.all_mask)
                if l < L:
                    self._attention_item(l, mb)
                    self._barrier(active, self.all_mask)

    # -- what stays in SRAM for the whole step -------------------------------------------------
    def _plan_residents(self) -> int:
        """Lay out the dense cores' step-resident SRAM (the norm window, then per micro-batch
        the core's columns of the residual stream ``x`` and ``x2``); returns its size.

        The output projection and the down projection split the same ``d_model`` columns
        the same way, so a core adds (and stores) the very columns it produced one stage
        earlier: it keeps them in SRAM instead of loading them back (pre-LN models, when
        the two linears have the same tiles on every core and the rows take little SRAM)."""
        plan, cfg = self.plan, self.cfg
        top = self._window_at + -(-self._norm_window // SRAM_ALIGN) * SRAM_ALIGN
        self._slots: dict[tuple[int, str], int] = {}
        self._valid: set[tuple[int, str]] = set()
        if cfg.arch == "bert" or not plan.layers:
            return top
        o, down = plan.layers[0].o, plan.layers[0].down
        cols = 0
        for cid in self.target.dense:
            tiles = [(t.c0, t.c1) for t in o.core_tiles(cid)]
            if tiles != [(t.c0, t.c1) for t in down.core_tiles(cid)]:
                return top
            cols = max(cols, sum(c1 - c0 for c0, c1 in tiles))
        sram = min(self.target.core(cid).sram_bytes for cid in self.target.dense)
        slots, at = {}, top
        for mb, segs in enumerate(self.mbs):
            nbytes = -(-sum(s.T for s in segs) * cols * F32 // SRAM_ALIGN) * SRAM_ALIGN
            for name in ("x", "x2"):
                if nbytes:
                    slots[mb, name] = at
                    at += nbytes
        if at - top > sram // 16:
            return top
        self._slots = slots
        return at

    # -- norms --------------------------------------------------------------------------------
    def _need_norms(self, norms: list[tuple[int, int]]) -> None:
        """Make the dense cores' SRAM norm window hold ``norms`` (adjacent in the plan's norm
        region), loading a new window when it does not."""
        if not norms:
            return
        plan = self.plan
        lo = min(g for g, _ in norms)
        hi = max(g for g, _ in norms) + plan.norm_bytes
        for cid in self.target.dense:
            c = self.cores[cid]
            if c.norms is not None and c.norms[0] <= lo and hi <= c.norms[1]:
                continue
            end = min(plan.norms + plan.norms_bytes, lo + self._norm_window)
            if hi > end:
                raise CompileError("norm window too small")     # not reached: adjacent norms
            c.norms = (lo, end)
            c.load(lo, self._window_at, end - lo)

    def _norm_sram(self, c: CoreEmitter, norm: tuple[int, int]) -> tuple[int, int]:
        """SRAM addresses of a norm's gamma (and beta) in the core's window."""
        at = self._window_at - c.norms[0]
        return norm[0] + at, (norm[1] + at) if norm[1] else 0

    # -- dense items --------------------------------------------------------------------------
    def _dense_item(self, l: int, mb: int) -> None:
        segs = self.mbs[mb]
        if not segs:
            return
        cfg, plan, buf = self.cfg, self.plan, self.plan.buffers[mb]
        R = sum(s.T for s in segs)
        post_ln = cfg.arch == "bert"
        stages, norms = [], []
        if l == 0:
            stages.append((("embed", mb, R), lambda: self._embed(buf, R)))
            if cfg.arch == "bert":
                norms.append(plan.emb_norm)
        else:
            prev = plan.layers[l - 1]
            o, up, down = (("lin", x.name, mb, R) for x in (prev.o, prev.up, prev.down))
            # the residual columns kept in SRAM (see _plan_residents): (read, write) slots
            slots, valid = self._slots, self._valid
            keep_o = (slots[mb, "x"] if (mb, "x") in valid else None, slots.get((mb, "x2")))
            keep_down = (slots.get((mb, "x2")), slots.get((mb, "x")))
            if keep_down[0] is not None:
                valid.update({(mb, "x"), (mb, "x2")})
            o, down = o + keep_o, down + keep_down
            if post_ln:        # x2 = LN(att·Wo + bo + x); x = LN(ffn(x2) + x2)
                norms += [prev.norm1, prev.norm2]
                stages += [(o, lambda: self._linear(prev.o, buf["att"], buf["x2"], R,
                                                    "residual", res=buf["x"])),
                           (("norm", l, 1, mb, R),
                            lambda: self._norm(buf["x2"], buf["x2"], prev.norm1, R)),
                           (up, lambda: self._linear(prev.up, buf["x2"], buf["h"], R, "act")),
                           (down, lambda: self._linear(prev.down, buf["h"], buf["x"], R,
                                                       "residual", res=buf["x2"])),
                           (("norm", l, 2, mb, R),
                            lambda: self._norm(buf["x"], buf["x"], prev.norm2, R))]
            else:              # x2 = x + att·Wo; x = x2 + ffn(norm2(x2))
                norms.append(prev.norm2)
                stages += [(o, lambda: self._linear(prev.o, buf["att"], buf["x2"], R,
                                                    "residual", res=buf["x"], keep=keep_o)),
                           (up, lambda: self._linear(prev.up, buf["x2"], buf["h"], R, "act",
                                                     norm=prev.norm2)),
                           (down, lambda: self._linear(prev.down, buf["h"], buf["x"], R,
                                                       "residual", res=buf["x2"],
                                                       keep=keep_down))]
        if l < cfg.n_layers:
            cur = plan.layers[l]
            if not post_ln:
                norms.append(cur.norm1)
            # the KV-cache writes follow the positions: a fragment of their own
            key = ("lin", cur.qkv.name, mb, R, tuple(segment_key(s, self._pages(s)) for s in segs))
            stages.append((key, lambda: self._linear(
                cur.qkv, buf["x"], buf["q"], R, "qkv", layer=l, segs=segs,
                positions=buf["pos"], norm=None if post_ln else cur.norm1)))
        elif cfg.causal:
            norms.append(plan.final_norm)
            rows = [s.r0 + s.T - 1 for s in segs]
            stages.append((("lin", "lm_head", mb, tuple(rows)), lambda: self._linear(
                plan.lm_head, buf["x"], buf["out"], len(segs), "store", norm=plan.final_norm,
                rows=rows)))
        else:
            stages.append((("pool", mb, tuple(segment_key(s, 0) for s in segs)),
                           lambda: self._pool(buf, segs)))
        self._need_norms(norms)
        window = tuple(self.cores[cid].norms for cid in self.target.dense)
        for i, (key, stage) in enumerate(stages):
            if i:
                self._barrier(self.target.dense, self.dense_mask)
            self._fragment(key + (window,), stage)
            for cid in self.target.dense:
                self.cores[cid].free()

    def _row_split(self, R: int):
        return zip(self.target.dense, split(R, len(self.target.dense)))

    def _row_chunk(self, c: CoreEmitter, per_row: int, fixed: int = 0) -> int:
        """Rows of ``per_row`` bytes that fit the core's free SRAM beside ``fixed`` bytes."""
        rows = (c.info.sram_bytes - c.top - fixed - 4 * SRAM_ALIGN) // per_row
        if rows < 1:
            raise CompileError(f"core {c.info.id}: one row of {per_row} bytes does not fit "
                               f"its SRAM ({c.info.sram_bytes} bytes)")
        return int(rows)

    def _embed(self, buf: dict, R: int) -> None:
        cfg, plan, D = self.cfg, self.plan, self.cfg.d_model
        for cid, (r0, r1) in self._row_split(R):
            c = self.cores[cid]
            if r1 <= r0:
                continue
            gb, bb = self._norm_sram(c, plan.emb_norm) if cfg.arch == "bert" else (0, 0)
            chunk = self._row_chunk(c, 2 * D * F32 + 3 * 4)
            base = c.top
            for a in range(r0, r1, chunk):
                n = min(r1, a + chunk) - a
                c.top = base
                ids, x = c.alloc(n * 4, "ids"), c.alloc(n * D * F32, "rows")
                tmp = c.alloc(n * D * F32, "rows")
                c.load(buf["ids"] + a * 4, ids, n * 4)
                c.emit("EMBED", n=n, ids=ids, table=plan.wte, row_bytes=D * F32, out=x)
                extra = []
                if cfg.arch == "bert":
                    extra = [("types", plan.wtt), ("pos", plan.wpe)]
                elif cfg.arch == "gpt2":
                    extra = [("pos", plan.wpe)]
                for name, table in extra:
                    c.load(buf[name] + a * 4, ids, n * 4)
                    c.emit("EMBED", n=n, ids=ids, table=table, row_bytes=D * F32, out=tmp)
                    c.emit("ADD", n=n * D, a=x, b=tmp, out=x)
                if cfg.arch == "bert":
                    self._apply_norm(c, plan.emb_norm, gb, bb, x, n)
                c.store(buf["x"] + a * D * F32, x, n * D * F32)

    def _norm(self, src: int, dst: int, norm: tuple[int, int], R: int) -> None:
        """dst rows = norm(src rows), rows split over the dense cores (post-LN models)."""
        D = self.cfg.d_model
        for cid, (r0, r1) in self._row_split(R):
            c = self.cores[cid]
            if r1 <= r0:
                continue
            g, b = self._norm_sram(c, norm)
            base = c.top
            chunk = self._row_chunk(c, D * F32)
            for a in range(r0, r1, chunk):
                n = min(r1, a + chunk) - a
                c.top = base
                x = c.alloc(n * D * F32, "rows")
                c.load(src + a * D * F32, x, n * D * F32)
                self._apply_norm(c, norm, g, b, x, n)
                c.store(dst + a * D * F32, x, n * D * F32)

    def _apply_norm(self, c: CoreEmitter, norm: tuple[int, int], g: int, b: int, x: int,
                    n: int) -> None:
        """LayerNorm (with a beta) or RMSNorm of n rows at x, in place."""
        D, eps = self.cfg.d_model, self.cfg.norm_eps
        if norm[1]:
            c.emit("LAYERNORM", rows=n, cols=D, a=x, gamma=g, beta=b, out=x, eps=eps)
        else:
            c.emit("RMSNORM", rows=n, cols=D, a=x, gamma=g, out=x, eps=eps)

    def _pool(self, buf: dict, segs: list[Segment]) -> None:
        """Mean pooling of each sequence's rows: a halving tree of row-block ADDs (the
        reference's ``row_sum`` over tokens), then SCALE by 1/T."""
        D = self.cfg.d_model
        for cid, (i0, i1) in self._row_split(len(segs)):
            c = self.cores[cid]
            for s in segs[i0:i1]:
                c.free()
                x = c.alloc(s.T * D * F32, "the sequence's rows")
                c.load(buf["x"] + s.r0 * D * F32, x, s.T * D * F32)
                n = s.T
                while n > 1:
                    h = n // 2
                    c.emit("ADD", n=h * D, a=x, b=x + (n - h) * D * F32, out=x)
                    n -= h
                c.emit("SCALE", n=D, a=x, out=x, factor=1.0 / s.T)
                c.store(buf["out"] + s.row * D * F32, x, D * F32)

    # -- linears ------------------------------------------------------------------------------
    def _linear(self, lin: Linear, src: int, dst: int, R: int, epilogue: str, *,
                res: int = 0, layer: int = 0, segs: list[Segment] | None = None,
                positions: int = 0, norm: tuple[int, int] | None = None,
                rows: list[int] | None = None,
                keep: tuple[int | None, int | None] = (None, None)) -> None:
        """dst = epilogue(A · W (+ bias)) on the columns each dense core owns, A = the R rows
        of ``src`` (or the rows listed in ``rows``), normalised first with ``norm`` (every
        dense core normalises the rows it needs itself: no extra pass, no extra barrier).

        Epilogues: ``store``; ``act`` (the FFN activation, SwiGLU for a gated linear);
        ``residual`` (+ the same columns of ``res``); ``qkv`` (RoPE on q and k, q to ``dst``,
        k and v into the KV cache of ``layer``). ``keep``: for ``residual``, the SRAM slots
        (or None) holding this core's columns of ``res`` for all R rows, and receiving the
        result's (tile by tile: tile t's R × t.n block, then the next tile's)."""
        K = lin.K
        rope = epilogue == "qkv" and self.cfg.rope_theta is not None
        for cid in self.target.dense:
            tiles = lin.core_tiles(cid)
            if not tiles:
                continue
            c = self.cores[cid]
            nt_max = max(t.n for t in tiles)
            resident = self.plan.resident.get(cid, {})
            loaded = max([t.nbytes for t in tiles if t.address not in resident], default=0)
            w = [c.alloc(loaded, "weight tile") if loaded else 0
                 for _ in range(2 if lin.gated else 1)]
            pos = c.alloc(R * 4, "positions") if rope else 0
            if rope:
                c.load(positions, pos, R * 4)
            g, b = self._norm_sram(c, norm) if norm else (0, 0)
            chunk = min(R, self._row_chunk(c, (K + 3 * nt_max) * F32))
            base = c.top
            for a0 in range(0, R, chunk):
                m = min(R, a0 + chunk) - a0
                c.top = base
                A = c.alloc(m * K * F32, "activation rows")
                C = [c.alloc(m * nt_max * F32, "output tile") for _ in range(2)]
                tmp = c.alloc(m * nt_max * F32, "residual tile")
                if rows is None:
                    c.load(src + a0 * K * F32, A, m * K * F32)
                else:
                    for i in range(m):
                        c.load(src + rows[a0 + i] * K * F32, A + i * K * F32, K * F32)
                if norm:
                    self._apply_norm(c, norm, g, b, A, m)
                cc0 = tiles[0].c0
                for t in tiles:
                    out = self._tile(c, lin, t, A, w, C, tmp, m)
                    at = (R * (t.c0 - cc0) + a0 * t.n) * F32       # in a kept slot
                    self._epilogue(c, lin, t, epilogue, out, tmp, m, a0, dst, res, layer, segs,
                                   pos, *(None if k is None else k + at for k in keep))

    def _tile(self, c: CoreEmitter, lin: Linear, t: Tile, A: int, w: list[int], C: list[int],
              tmp: int, m: int) -> int:
        """A (m, K) · W_t (+ bias) -> the SRAM address of the (m, t.n) fp32 result; for a
        gated linear silu(gate) · up.

        The bias preloads the accumulator (the reference's numerics): for one row the GEMM
        accumulates straight into the tile's bias in SRAM (into a copy for a resident tile),
        for more rows the bias row is copied to every row in SRAM (:meth:`_rows_of`). int8
        weights scale the finished sum, so their bias is added after the GEMM."""
        plan = self.plan
        dt, int8 = _DT[plan.dtype], plan.dtype == "int8"
        n = t.n
        wbytes = lin.K * n * _WB[plan.dtype]
        resident = plan.resident.get(c.info.id, {})
        outs = []
        for half, address in enumerate([t.address, t.address2][:len(w)]):
            wa = resident.get(address)
            if wa is None:
                wa = w[half]
                c.load(address, wa, t.nbytes)
            elif not self._resident_loaded:
                c.load(address, wa, t.nbytes)      # loaded where it stays for later steps
            bias = wa + t.bias_offset if t.bias_offset else 0
            out = C[half]
            if bias and not int8:
                if m == 1 and address in resident:
                    # a resident tile's biases must stay: copy them (×1.0 is exact)
                    c.emit("SCALE", n=n, a=bias, out=out, factor=1.0)
                elif m == 1:
                    out = bias
                else:
                    self._rows_of(c, bias, out, n, m)
            c.emit("GEMM", ("accumulate",) if bias and not int8 else None, m=m, n=n, k=lin.K,
                   a=A, b=wa, c=out, scale=wa + wbytes if int8 else 0,
                   dtype_a="FP32", dtype_b=dt)
            if bias and int8:
                if m > 1:
                    self._rows_of(c, bias, tmp, n, m)
                c.emit("ADD", n=m * n, a=out, b=bias if m == 1 else tmp, out=out)
            outs.append(out)
        if lin.gated:
            c.emit("SILU", n=m * n, a=outs[0], out=outs[0])
            c.emit("MUL", n=m * n, a=outs[0], b=outs[1], out=outs[0])
        return outs[0]

    @staticmethod
    def _rows_of(c: CoreEmitter, src: int, dst: int, n: int, m: int) -> None:
        """m copies of the n fp32 at src, as rows at dst: SCALE by 1.0 (exact), doubling the
        rows copied each time (no memory traffic; a stride-0 LOAD would be m transfers)."""
        c.emit("SCALE", n=n, a=src, out=dst, factor=1.0)
        have = 1
        while have < m:
            k = min(have, m - have)
            c.emit("SCALE", n=k * n, a=dst, out=dst + have * n * F32, factor=1.0)
            have += k

    def _store_cols(self, c: CoreEmitter, C: int, m: int, n: int, nt: int, dst: int, N: int,
                    row0: int, col0: int) -> None:
        """Store n columns of the m rows (nt wide in SRAM) at C into columns col0.. of the
        N-wide rows row0.. at dst."""
        c.emit("STORE", hbm=dst + (row0 * N + col0) * F32, sram=C, row_bytes=n * F32, rows=m,
               hbm_stride=N * F32, sram_stride=nt * F32)

    def _epilogue(self, c: CoreEmitter, lin: Linear, t: Tile, kind: str, C: int, tmp: int, m: int,
                  a0: int, dst: int, res: int, layer: int, segs, pos: int,
                  res_kept: int | None = None, out_kept: int | None = None) -> None:
        cfg, n = self.cfg, t.n
        if kind == "act" and not lin.gated:
            op = {"gelu_tanh": "GELU", "gelu_erf": "GELU_ERF", "silu": "SILU"}[cfg.activation]
            c.emit(op, n=m * n, a=C, out=C)
        if kind == "residual":
            if res_kept is None:
                c.emit("LOAD", hbm=res + (a0 * lin.N + t.c0) * F32, sram=tmp,
                       row_bytes=n * F32, rows=m, hbm_stride=lin.N * F32, sram_stride=n * F32)
                res_kept = tmp
            out = C if out_kept is None else out_kept
            c.emit("ADD", n=m * n, a=res_kept, b=C, out=out)
            C = out
        if kind != "qkv":
            self._store_cols(c, C, m, n, n, dst, lin.N, a0, t.c0)
            return
        hd, Q, KVD = cfg.head_dim, cfg.q_dim, cfg.kv_dim
        if t.c0 < Q + KVD and cfg.rope_theta is not None:       # (RoPE tiles are not fused)
            c.emit("ROPE", rows=m, heads=n // hd, head_dim=hd, a=C, out=C,
                   positions=pos + a0 * 4, theta=cfg.rope_theta)
        off = 0
        for c0, c1 in t.ranges:
            at = C + off * F32
            if c0 < Q:
                self._store_cols(c, at, m, c1 - c0, n, dst, Q, a0, c0)
            else:
                kind_kv, first = (0, (c0 - Q) // hd) if c0 < Q + KVD else \
                    (1, (c0 - Q - KVD) // hd)
                self._kv_store(c, at, m, n, a0, layer, kind_kv, first, (c1 - c0) // hd, segs)
            off += c1 - c0

    def _kv_store(self, c: CoreEmitter, C: int, m: int, nt: int, a0: int, layer: int, kind: int,
                  first_head: int, heads: int, segs: list[Segment]) -> None:
        """Rows a0..a0+m-1 of C (heads × head_dim columns each, nt columns per row) into
        the KV cache. A single position of several heads is one STORE (the heads of a page
        are equally spaced)."""
        plan, hd = self.plan, self.cfg.head_dim
        P = plan.page_tokens
        for s in segs:
            lo, hi = max(a0, s.r0), min(a0 + m, s.r0 + s.T)
            r = lo
            while r < hi:
                p = s.pos0 + (r - s.r0)
                run = min(hi - r, P - p % P)
                at = C + (r - a0) * nt * F32
                hbm = plan.kv_address(s.blocks[p // P], layer, kind, first_head, p % P)
                if run == 1:
                    c.emit("STORE", hbm=hbm, sram=at, row_bytes=hd * F32, rows=heads,
                           hbm_stride=P * hd * F32, sram_stride=hd * F32)
                else:
                    for h in range(heads):
                        c.emit("STORE", hbm=hbm + h * P * hd * F32, sram=at + h * hd * F32,
                               row_bytes=hd * F32, rows=run, hbm_stride=hd * F32,
                               sram_stride=nt * F32)
                r += run

    # -- attention ----------------------------------------------------------------------------


__all__ = ["Segment", "StepProgram", "StepCompiler", "CoreProgram"]
