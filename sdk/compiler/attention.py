"""The attention stages of a step (:class:`AttentionStages`, mixed into
:class:`sdk.compiler.step.StepCompiler`): the (sequence, KV head) units of a micro-batch split
in contiguous runs over the attention cores; per unit, keys and values from the paged KV cache,
then ``GEMM q·Kᵀ``, a causal ``SOFTMAX`` and ``GEMM P·V`` per query head — the reference's
numerics (``sdk/reference.py``) exactly; a core's heads of a sequence decoding one token go
together.

Host-side code: imports only ``vp.spec`` and the SDK.
"""

from __future__ import annotations

from sdk.compiler.plan import F32, split
from sdk.compiler.program import SRAM_ALIGN, CoreEmitter, Segment, segment_key


class AttentionStages:
    """Attention items of :class:`~sdk.compiler.step.StepCompiler` (which provides ``plan``,
    ``cfg``, ``target``, ``cores``, ``mbs``, ``_fragment``, ``_pages`` and ``_row_chunk``)."""

    def _attention_item(self, l: int, mb: int) -> None:
        segs = self.mbs[mb]
        if not segs:
            return
        key = ("attn", l, mb, tuple(segment_key(s, self._pages(s)) for s in segs))
        self._fragment(key, lambda: self._attention(l, mb, segs))

    def _attention(self, l: int, mb: int, segs: list[Segment]) -> None:
        """The (sequence, KV head) units of the micro-batch, split in contiguous runs over the
        attention cores; a core's run of one sequence's heads decoding a single token is
        done together (one load of the queries, of each page's keys and values, one
        SOFTMAX, one store)."""
        cfg = self.cfg
        scale = cfg.head_dim ** -0.5 / ((l + 1) if cfg.scale_attn_by_layer else 1)
        units = [(s, g) for s in segs for g in range(cfg.n_kv_heads)]
        attn = self.target.attention
        for cid, (u0, u1) in zip(attn, split(len(units), len(attn))):
            c = self.cores[cid]
            i = u0
            while i < u1:
                s, g0 = units[i]
                j = i + 1
                while j < u1 and units[j][0] is s:
                    j += 1
                if s.T == 1:
                    g1 = units[j - 1][1] + 1
                    c.free()
                    G, L, hd = cfg.n_heads // cfg.n_kv_heads, s.pos0 + 1, cfg.head_dim
                    per_unit = (2 * L * hd + G * (2 * hd + L)) * F32 + 5 * SRAM_ALIGN
                    step = max(1, (c.info.sram_bytes - c.top) // per_unit)
                    for g in range(g0, g1, step):
                        self._attend_token(c, s, l, mb, g, min(g1, g + step), scale)
                else:
                    for g in range(g0, units[j - 1][1] + 1):
                        self._attend(c, s, l, mb, g, scale)
                i = j
            c.free()

    def _attend(self, c: CoreEmitter, s: Segment, l: int, mb: int, g: int, scale: float) -> None:
        """Every query head of KV head g for the segment's tokens, one head at a time."""
        cfg, buf = self.cfg, self.plan.buffers[mb]
        hd, Q = cfg.head_dim, cfg.q_dim
        group = cfg.n_heads // cfg.n_kv_heads
        c.free()
        L = s.pos0 + s.T
        K = c.alloc(L * hd * F32, f"keys of a {L}-token context")
        V = c.alloc(L * hd * F32, f"values of a {L}-token context")
        for kind, dstv in ((0, K), (1, V)):
            self._kv_load(c, s, l, kind, g, 1, L, dstv)
        tb = min(s.T, self._row_chunk(c, (L + 2 * hd) * F32))
        base = c.top
        for t0 in range(0, s.T, tb):
            n = min(s.T, t0 + tb) - t0
            for h in range(g * group, (g + 1) * group):
                c.top = base
                q = c.alloc(n * hd * F32, "query rows")
                S = c.alloc(n * L * F32, "scores")
                O = c.alloc(n * hd * F32, "attention output")
                row = s.r0 + t0
                c.emit("LOAD", hbm=buf["q"] + (row * Q + h * hd) * F32, sram=q,
                       row_bytes=hd * F32, rows=n, hbm_stride=Q * F32, sram_stride=hd * F32)
                c.emit("GEMM", ("trans_b",), m=n, n=L, k=hd, a=q, b=K, c=S, scale=0,
                       dtype_a="FP32", dtype_b="FP32")
                c.emit("SOFTMAX", ("causal",) if cfg.causal else None, rows=n, cols=L, a=S,
                       out=S, scale=scale, pos0=s.pos0 + t0)
                c.emit("GEMM", m=n, n=hd, k=L, a=S, b=V, c=O, scale=0, dtype_a="FP32",
                       dtype_b="FP32")
                c.emit("STORE", hbm=buf["att"] + (row * Q + h * hd) * F32, sram=O,
                       row_bytes=hd * F32, rows=n, hbm_stride=Q * F32, sram_stride=hd * F32)

    def _attend_token(self, c: CoreEmitter, s: Segment, l: int, mb: int, g0: int, g1: int,
                      scale: float) -> None:
        """KV heads g0..g1-1 of a segment with one new token: the query heads of a KV head
        are the rows of one GEMM q·Kᵀ (scores of every head stacked), one SOFTMAX over all
        the rows (the token sees every position: row r's causal limit pos0 + r is past the
        last column), one GEMM P·V per KV head, and one contiguous load of the queries and
        store of the outputs. Each row's arithmetic is that of the per-head path."""
        cfg, buf = self.cfg, self.plan.buffers[mb]
        hd, Q = cfg.head_dim, cfg.q_dim
        G = cfg.n_heads // cfg.n_kv_heads
        nu, L = g1 - g0, s.pos0 + 1
        nh = nu * G
        c.free()
        K = c.alloc(nu * L * hd * F32, f"keys of a {L}-token context")
        V = c.alloc(nu * L * hd * F32, f"values of a {L}-token context")
        q = c.alloc(nh * hd * F32, "query rows")
        S = c.alloc(nh * L * F32, "scores")
        O = c.alloc(nh * hd * F32, "attention output")
        for kind, dstv in ((0, K), (1, V)):
            self._kv_load(c, s, l, kind, g0, nu, L, dstv)
        at = (s.r0 * Q + g0 * G * hd) * F32
        c.load(buf["q"] + at, q, nh * hd * F32)
        for u in range(nu):
            c.emit("GEMM", ("trans_b",), m=G, n=L, k=hd, a=q + u * G * hd * F32,
                   b=K + u * L * hd * F32, c=S + u * G * L * F32, scale=0, dtype_a="FP32",
                   dtype_b="FP32")
        c.emit("SOFTMAX", ("causal",) if cfg.causal else None, rows=nh, cols=L, a=S, out=S,
               scale=scale, pos0=s.pos0)
        for u in range(nu):
            c.emit("GEMM", m=G, n=hd, k=L, a=S + u * G * L * F32, b=V + u * L * hd * F32,
                   c=O + u * G * hd * F32, scale=0, dtype_a="FP32", dtype_b="FP32")
        c.store(buf["att"] + at, O, nh * hd * F32)

    def _kv_load(self, c: CoreEmitter, s: Segment, layer: int, kind: int, head: int, heads: int,
                 L: int, dst: int) -> None:
        """Keys (kind 0) or values of KV heads head..head+heads-1 over positions 0..L-1 into
        SRAM at dst (each head's L × head_dim rows contiguous); one LOAD per page."""
        plan, hd, P = self.plan, self.cfg.head_dim, self.plan.page_tokens
        for p0 in range(0, L, P):
            n = min(L, p0 + P) - p0
            c.emit("LOAD", hbm=plan.kv_address(s.blocks[p0 // P], layer, kind, head, 0),
                   sram=dst + p0 * hd * F32, row_bytes=n * hd * F32, rows=heads,
                   hbm_stride=P * hd * F32, sram_stride=L * hd * F32)
