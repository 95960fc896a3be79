"""The static plan of a compiled model: where every weight, buffer and cache page lives in HBM,
and how each projection's columns are split over the dense cores and tiled to their SRAM.

Weight layout
    Every linear layer ``y = x·W (+ b)`` with ``W`` (K, N) is split by output columns over the
    dense cores (whole heads for the QKV projection, so RoPE and the KV-cache writes stay on
    one core), and each core's columns into *tiles* of ``nt`` columns: the widest multiple of
    :data:`COLUMN_ALIGN` (or of ``head_dim``) whose ``K × nt`` weights take at most half of
    the core's SRAM. A tile is stored contiguously in HBM (``K × nt`` elements row-major in
    the weight dtype, then ``nt`` fp32 column scales for int8, then ``nt`` fp32 biases when
    the layer has a bias), so loading it is one transfer. Columns are independent in the GEMM numerics (``vp.spec.numerics.gemm``), so any
    split gives the reference's bits. LLaMA's gate and up projections form one *gated* linear:
    each tile is a pair (gate columns, the same up columns).

Buffers (per micro-batch, fp32 rows of the step's tokens): ``x`` (residual stream), ``x2``
(after attention), ``h`` (FFN hidden), ``q`` (queries), ``att`` (attention output), ``out``
(logits of each sequence's last token, or pooled embeddings); int32 ``ids``/``pos``/``types``.

KV cache
    Paged: a *block* holds :attr:`Plan.page_tokens` consecutive positions of one sequence for
    every layer, laid out ``[layer][K|V][kv_head][page_tokens][head_dim]``, so the keys of one
    head on one page are one contiguous run. The runtime hands blocks to sequences as they
    grow (:class:`sdk.kvcache.PagedKVCache`); the step compiler turns block tables into
    addresses.

Host-side code: imports only ``vp.spec``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from sdk.compiler.target import CompileError, Target
from sdk.model_config import ModelConfig
from vp.spec import numerics
from vp.spec.units import KIB, MIB, format_size

#: Output columns of a tile are a multiple of this (64 bytes of fp32) when the slice allows.
COLUMN_ALIGN = 16
#: Every HBM region starts on this boundary (bytes).
HBM_ALIGN = 64 * KIB
#: Share of a core's SRAM one weight tile may take.
TILE_FRACTION = 0.5
#: Bytes of each core's program slot in HBM.
PROGRAM_SLOT = 8 * MIB
#: Bytes of the command ring.
RING_BYTES = 256 * KIB
DTYPES = ("fp32", "bf16", "int8")
_WBYTES = {"fp32": 4, "bf16": 2, "int8": 1}
F32 = 4


def split(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``parts`` contiguous ranges, as even as possible in units of
    ``align`` (the last may be ragged); some ranges are empty when n is small."""
    units = -(-n // align)
    base, extra = divmod(units, parts)
    out, start = [], 0
    for i in range(parts):
        end = min(n, start + (base + (i < extra)) * align)
        out.append((start, end))
        start = end
    return out


def _align(x: int, a: int = HBM_ALIGN) -> int:
    return -(-x // a) * a


@dataclass
class Tile:
    """Columns ``[c0, c1)`` of a linear on one core, stored at ``address`` (and ``address2``
    for the up half of a gated linear); ``nbytes`` per half, scales and biases included;
    ``bias_offset``: byte offset of the biases in a half (0: no bias). A fused QKV tile holds
    several column ranges side by side (``cols``: its ``(c0, c1)`` ranges in tile order; empty
    for one range), e.g. a core's query, key and value heads: one load and one GEMM."""

    core: int
    c0: int
    c1: int
    address: int
    nbytes: int
    address2: int = 0
    bias_offset: int = 0
    cols: tuple[tuple[int, int], ...] = ()

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        """The tile's column ranges of the linear, in the tile's column order."""
        return self.cols or ((self.c0, self.c1),)

    @property
    def n(self) -> int:
        return sum(c1 - c0 for c0, c1 in self.cols) if self.cols else self.c1 - self.c0


@dataclass
class Linear:
    """One projection: ``K`` inputs, ``N`` outputs, its tiles by core; ``bias``: whether
    it has one (stored in the tiles)."""

    name: str
    K: int
    N: int
    gated: bool
    bias: bool = False
    tiles: dict[int, list[Tile]] = field(default_factory=dict)

    def core_tiles(self, core: int) -> list[Tile]:
        return self.tiles.get(core, [])


@dataclass
class LayerPlan:
    """Addresses of one block's weights: norms (gamma, beta or 0) and four linears."""

    norm1: tuple[int, int]
    norm2: tuple[int, int]
    qkv: Linear
    o: Linear
    up: Linear
    down: Linear


class _Heap:
    """Bump allocator over HBM, HBM_ALIGN-aligned regions, with a readable region list."""

    def __init__(self, base: int):
        self.top = base
        self.regions: list[tuple[str, int, int]] = []

    def take(self, name: str, nbytes: int) -> int:
        addr = self.top
        self.top = _align(addr + max(nbytes, 1))
        self.regions.append((name, addr, nbytes))
        return addr


class Plan:
    """The HBM layout and column tiling of ``config`` on ``target``.

    ``dtype``: weight dtype of the projections (``fp32``, ``bf16``, ``int8`` weight-only);
    ``max_batch`` sequences, ``max_context`` positions each, ``max_step_tokens`` new tokens
    per micro-batch in one step, ``page_tokens`` positions per KV-cache block.
    ``micro_batches``: how many micro-batches a step's sequences are split into; default 2
    on the ``afd`` placement with ``max_batch >= 2`` (ping-pong), else 1; 2 needs ``afd``.
    Raises :class:`CompileError` when the model does not fit (HBM, SRAM) with both sizes.
    """

    def __init__(self, config: ModelConfig, target: Target, *, dtype: str = "fp32",
                 max_batch: int = 8, max_context: int | None = None,
                 max_step_tokens: int | None = None, page_tokens: int = 64,
                 resident_weights: bool = True, micro_batches: int | None = None):
        if dtype not in DTYPES:
            raise CompileError(f"unsupported dtype {dtype!r} (expected one of "
                               f"{', '.join(DTYPES)})")
        if max_batch < 1 or page_tokens < 1:
            raise CompileError("max_batch and page_tokens must be positive")
        c = config
        self.config, self.target, self.dtype = c, target, dtype
        self.max_batch = max_batch
        self.max_context = min(max_context or c.max_positions, c.max_positions)
        if micro_batches is None:
            micro_batches = 2 if target.disaggregated and max_batch >= 2 else 1
        elif micro_batches not in (1, 2) or micro_batches > max_batch:
            raise CompileError(f"micro_batches {micro_batches}: expected 1 or 2, at most "
                               f"max_batch ({max_batch})")
        elif micro_batches == 2 and not target.disaggregated:
            raise CompileError("two micro-batches (ping-pong) need the afd placement")
        self.micro_batches = micro_batches
        self.mb_batch = -(-max_batch // self.micro_batches)
        self.max_step_tokens = max_step_tokens or min(self.mb_batch * self.max_context, 4096)
        self.page_tokens = page_tokens
        self.kv_bytes = F32
        heap = _Heap(target.hbm_base)
        self.heap = heap
        self.ring = heap.take("command ring", RING_BYTES)
        self.timestamps = heap.take("timestamps", 64)
        self.programs = {cid: heap.take(f"program core{cid}", PROGRAM_SLOT)
                         for cid in target.active}
        R, D, B = self.max_step_tokens, c.d_model, self.mb_batch
        self.buffers = []
        for mb in range(self.micro_batches):
            sizes = {"ids": R * 4, "pos": R * 4, "types": R * 4, "x": R * D * F32,
                     "x2": R * D * F32, "h": R * c.d_ff * F32, "q": R * c.q_dim * F32,
                     "att": R * c.q_dim * F32,
                     "out": B * max(c.vocab_size if c.causal else D, D) * F32}
            self.buffers.append({k: heap.take(f"mb{mb}.{k}", v) for k, v in sizes.items()})
        self.weights_base = heap.top
        self._plan_weights(heap)
        self.weights_bytes = heap.top - self.weights_base
        self.norm_window = (self.norms_bytes if self.norms_bytes <= self._dense_sram // 32
                            else 2 * self.norm_bytes)
        self._plan_resident(resident_weights)
        blocks_per_seq = -(-self.max_context // page_tokens)
        self.block_bytes = (c.n_layers * 2 * c.n_kv_heads * page_tokens * c.head_dim
                            * self.kv_bytes)
        self.n_blocks = max_batch * blocks_per_seq
        self.kv_pool = heap.take("KV cache", self.n_blocks * self.block_bytes)
        self.total_bytes = heap.top - target.hbm_base
        if self.total_bytes > target.hbm_size:
            raise CompileError(
                f"model does not fit: {config.arch} with {self.params:,} parameters needs "
                f"{format_size(self.total_bytes)} of HBM ({format_size(self.weights_bytes)} "
                f"weights in {dtype}, {format_size(self.n_blocks * self.block_bytes)} KV cache "
                f"for {max_batch} x {self.max_context} tokens), the board "
                f"{target.board_name!r} has {format_size(target.hbm_size)}")

    # -- weights --------------------------------------------------------------------------------
    @property
    def params(self) -> int:
        c = self.config
        per_layer = c.d_model * (c.q_dim + 2 * c.kv_dim) + c.q_dim * c.d_model \
            + (3 if c.arch == "llama" else 2) * c.d_model * c.d_ff
        return c.n_layers * per_layer + c.vocab_size * c.d_model

    def _per_column(self, lin: Linear) -> int:
        """HBM bytes of one tile column: weights, int8 scale, bias."""
        return lin.K * _WBYTES[self.dtype] + (F32 if self.dtype == "int8" else 0) \
            + (F32 if lin.bias else 0)

    def _tile_width(self, core: int, lin: Linear, unit: int) -> int:
        K = lin.K
        budget = self.target.core(core).sram_bytes * TILE_FRACTION / (2 if lin.gated else 1)
        per_col = self._per_column(lin)
        units = int(budget // (per_col * unit))
        if units < 1:
            raise CompileError(
                f"a {K}-deep weight tile of {unit} columns ({format_size(per_col * unit)}) "
                f"does not fit half the SRAM of core {core} "
                f"({format_size(self.target.core(core).sram_bytes)})")
        return units * unit

    def _tiles(self, heap: _Heap, lin: Linear, core: int, c0: int, c1: int, unit: int) -> None:
        if c1 > c0:
            self._fused_tiles(heap, lin, core, [(c0, c1)], unit)

    def _fused_tiles(self, heap: _Heap, lin: Linear, core: int,
                     ranges: list[tuple[int, int]], unit: int) -> None:
        """Tiles of at most the tile width over the columns of ``ranges`` taken in order; a
        tile spanning several ranges lists them (:attr:`Tile.cols`)."""
        ranges = [(a, b) for a, b in ranges if b > a]
        if not ranges:
            return
        nt = self._tile_width(core, lin, unit)
        per_col = self._per_column(lin)
        pieces: list[tuple[int, int]] = []
        room = nt

        def close() -> None:
            n = sum(b - a for a, b in pieces)
            nbytes = n * per_col
            label = ",".join(f"{a}:{b}" for a, b in pieces)
            addr = heap.take(f"{lin.name} core{core} [{label}]", nbytes * (2 if lin.gated else 1))
            lin.tiles.setdefault(core, []).append(
                Tile(core, pieces[0][0], pieces[-1][1], addr, nbytes,
                     addr + nbytes if lin.gated else 0, nbytes - n * F32 if lin.bias else 0,
                     tuple(pieces) if len(pieces) > 1 else ()))

        for a, b in ranges:
            while a < b:
                take = min(b - a, room)
                pieces.append((a, a + take))
                a, room = a + take, room - take
                if not room:
                    close()
                    pieces, room = [], nt
        if pieces:
            close()

    def _linear(self, heap: _Heap, name: str, K: int, N: int, bias: bool,
                gated: bool = False) -> Linear:
        lin = Linear(name, K, N, gated, bias)
        dense = self.target.dense
        for core, (c0, c1) in zip(dense, split(N, len(dense), COLUMN_ALIGN)):
            self._tiles(heap, lin, core, c0, c1, COLUMN_ALIGN)
        return lin

    def _qkv(self, heap: _Heap, name: str, bias: bool) -> Linear:
        c = self.config
        hd, Q, KVD = c.head_dim, c.q_dim, c.kv_dim
        lin = Linear(name, c.d_model, Q + 2 * KVD, False, bias)
        dense = self.target.dense
        q_split, kv_split = split(c.n_heads, len(dense)), split(c.n_kv_heads, len(dense))
        for core, (a, b), (e, f) in zip(dense, q_split, kv_split):
            ranges = [(a * hd, b * hd), (Q + e * hd, Q + f * hd), (Q + KVD + e * hd, Q + KVD + f * hd)]
            if c.rope_theta is None:
                # one fused tile (load, GEMM) for the core's query, key and value heads;
                # with RoPE a tile of many rows must keep q and k apart (ROPE takes whole rows)
                self._fused_tiles(heap, lin, core, ranges, hd)
            else:
                for c0, c1 in ranges:
                    self._tiles(heap, lin, core, c0, c1, hd)
        return lin

    def _plan_weights(self, heap: _Heap) -> None:
        c = self.config
        D, F, V = c.d_model, c.d_ff, c.vocab_size
        has_beta = c.arch != "llama"
        # Every norm in one region, in the order the dense items use them (embedding norm,
        # norm1 and norm2 of each layer, final norm): the norms of one dense item are
        # adjacent, and a core keeps a window of them in SRAM (one LOAD for many stages).
        vec = (2 if has_beta else 1) * D * F32
        count = (c.arch == "bert") + 2 * c.n_layers + bool(c.causal)
        self.norm_bytes = vec
        self.norms = heap.take(f"norms ({count})", count * vec)
        self.norms_bytes = count * vec
        taken = [0]

        def norm(name: str) -> tuple[int, int]:
            """(gamma, beta or 0) addresses: beta right after gamma, so one LOAD takes both."""
            gamma = self.norms + taken[0] * vec
            taken[0] += 1
            return gamma, gamma + D * F32 if has_beta else 0

        self.wte = heap.take("wte", V * D * F32)
        self.wpe = heap.take("wpe", c.max_positions * D * F32) if c.arch != "llama" else 0
        self.wtt = heap.take("wtt", c.type_vocab_size * D * F32) if c.arch == "bert" else 0
        self.emb_norm = norm("embeddings.norm") if c.arch == "bert" else (0, 0)
        bias = c.arch != "llama"
        self.layers = []
        for i in range(c.n_layers):
            p = f"layer{i}"
            self.layers.append(LayerPlan(
                norm(p + ".norm1"), norm(p + ".norm2"),
                self._qkv(heap, p + ".qkv", bias or c.attn_bias),
                self._linear(heap, p + ".o", c.q_dim, D, bias or c.attn_bias),
                self._linear(heap, p + ".up", D, F, bias or c.mlp_bias, gated=c.arch == "llama"),
                self._linear(heap, p + ".down", F, D, bias or c.mlp_bias)))
        if c.causal:
            self.final_norm = norm("final_norm")
            self.lm_head = self._linear(heap, "lm_head", D, V, False)

    @property
    def _dense_sram(self) -> int:
        return min(self.target.core(cid).sram_bytes for cid in self.target.dense)

    def _plan_resident(self, enabled: bool) -> None:
        """Choose the weight tiles each dense core keeps in SRAM from one step to the next
        (:attr:`resident`: core -> {tile HBM address: SRAM offset}, from offset 0;
        :attr:`resident_bytes`: core -> bytes). The largest tiles first, as long as the
        rest still fits: the largest tile left to load, the norm window, the residual
        columns and rows of activations (and on a core that also attends, one KV head's
        keys and values of the whole context)."""
        c = self.config
        self.resident = {cid: {} for cid in self.target.dense}
        self.resident_bytes = dict.fromkeys(self.target.dense, 0)
        if not enabled:
            return
        linears = [lin for lp in self.layers for lin in (lp.qkv, lp.o, lp.up, lp.down)]
        if c.causal:
            linears.append(self.lm_head)
        for cid in self.target.dense:
            sram = self.target.core(cid).sram_bytes
            reserve = _align(self.norm_window, 64) + sram // 16 + sram // 16
            if cid in self.target.attention:
                L, hd = self.max_context, c.head_dim
                group = c.n_heads // c.n_kv_heads
                reserve += (2 * L * hd + group * (2 * hd + L)) * F32
            tiles = sorted(((t.nbytes * (2 if lin.gated else 1), t, lin) for lin in linears
                            for t in lin.core_tiles(cid)), key=lambda x: -x[0])
            top, largest_left = 0, 0
            for i, (work, t, lin) in enumerate(tiles):
                # the largest tile that would still be loaded: one skipped, or the next
                rest = max([largest_left] + [w for w, _, _ in tiles[i + 1:i + 2]])
                need = _align(t.nbytes, 64) * (2 if lin.gated else 1)
                if top + need + rest + reserve <= sram:
                    for addr in ([t.address, t.address2] if lin.gated else [t.address]):
                        self.resident[cid][addr] = top
                        top += _align(t.nbytes, 64)
                else:
                    largest_left = max(largest_left, work)
            self.resident_bytes[cid] = top

    # -- weight images ---------------------------------------------------------------------------
    def _pack(self, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        """A (K, n) fp32 tile in the weight dtype, as bytes (int8: then n fp32 scales), then
        its n fp32 biases if any."""
        w = np.ascontiguousarray(w, dtype=np.float32)
        parts = []
        if self.dtype == "fp32":
            parts.append(w.reshape(-1).view(np.uint8))
        elif self.dtype == "bf16":
            parts.append(numerics.to_bf16(w).reshape(-1).view(np.uint8))
        else:
            amax = np.abs(w).max(axis=0)                                # (n,)
            scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
            q = np.clip(np.rint(w / scale[None, :]), -127, 127).astype(np.int8)
            parts += [q.reshape(-1).view(np.uint8), scale.view(np.uint8)]
        if b is not None:
            parts.append(np.ascontiguousarray(b, dtype=np.float32).view(np.uint8))
        return np.concatenate(parts)

    def _linear_images(self, lin: Linear, w: np.ndarray, b: np.ndarray | None):
        def cols(a: np.ndarray, t: Tile, shift: int = 0) -> np.ndarray:
            if not t.cols:
                return a[..., shift + t.c0:shift + t.c1]
            return np.concatenate([a[..., shift + c0:shift + c1] for c0, c1 in t.cols], axis=-1)

        for tiles in lin.tiles.values():
            for t in tiles:
                yield t.address, self._pack(cols(w, t), cols(b, t) if lin.bias else None)
                if lin.gated:
                    yield t.address2, self._pack(cols(w, t, lin.N),
                                                 cols(b, t, lin.N) if lin.bias else None)

    def weight_images(self, model):
        """(HBM address, array) pairs to upload for ``model`` (a
        :class:`sdk.reference.ReferenceModel`, whose loader checked names and shapes)."""
        c = self.config
        yield self.wte, model.wte
        if self.wpe:
            yield self.wpe, model.wpe
        if self.wtt:
            yield self.wtt, model.wtt
        if c.arch == "bert":
            yield self.emb_norm[0], model.emb_g
            yield self.emb_norm[1], model.emb_b
        for lp, L in zip(self.layers, model.layers):
            for (g, b), (mg, mb) in ((lp.norm1, (L.norm1_g, L.norm1_b)),
                                     (lp.norm2, (L.norm2_g, L.norm2_b))):
                yield g, mg
                if b:
                    yield b, mb
            yield from self._linear_images(lp.qkv, L.w_qkv, L.b_qkv)
            yield from self._linear_images(lp.o, L.w_o, L.b_o)
            yield from self._linear_images(lp.up, L.w_up, L.b_up)
            yield from self._linear_images(lp.down, L.w_down, L.b_down)
        if c.causal:
            yield self.final_norm[0], model.final_g
            if self.final_norm[1]:
                yield self.final_norm[1], model.final_b
            yield from self._linear_images(self.lm_head, model.lm_head, None)

    def split_batch(self, n: int) -> list[list[int]]:
        """Sequence indices 0..n-1 split into micro-batches: contiguous, as even as possible
        (one micro-batch per sequence at most)."""
        m = min(self.micro_batches, n)
        bounds = [round(i * n / m) for i in range(m + 1)]
        return [list(range(bounds[i], bounds[i + 1])) for i in range(m)]

    # -- KV cache -------------------------------------------------------------------------------
    def kv_address(self, block: int, layer: int, kind: int, kv_head: int, slot: int = 0) -> int:
        """HBM address of position ``slot`` (within the block) of K (kind 0) or V (kind 1)."""
        c = self.config
        run = self.page_tokens * c.head_dim * self.kv_bytes
        return (self.kv_pool + block * self.block_bytes
                + ((layer * 2 + kind) * c.n_kv_heads + kv_head) * run
                + slot * c.head_dim * self.kv_bytes)

    # -- summary --------------------------------------------------------------------------------
    def summary(self) -> str:
        """A readable memory map: one line per HBM region (weights folded per layer)."""
        lines = [f"HBM plan on {self.target.board_name} ({self.target.placement}, "
                 f"{self.dtype}): {format_size(self.total_bytes)} of "
                 f"{format_size(self.target.hbm_size)}"]
        folded: dict[str, list[int]] = {}
        order = []
        for name, addr, nbytes in self.heap.regions:
            key = re.sub(r" core\d+.*$", "", name)          # fold a linear's tiles, programs
            if key not in folded:
                folded[key] = [addr, 0, 0]
                order.append(key)
            folded[key][1] += nbytes
            folded[key][2] += 1
        for key in order:
            addr, nbytes, n = folded[key]
            more = f" ({n} regions)" if n > 1 else ""
            lines.append(f"  0x{addr:012x}  {format_size(nbytes):>12}  {key}{more}")
        return "\n".join(lines)


__all__ = ["Plan", "Linear", "Tile", "LayerPlan", "split", "CompileError", "DTYPES"]
