"""Synthetic decode-step workloads: the command stream and core programs of one decode token
through a stack of transformer decoder layers (LLaMA-style: RMSNorm, GQA attention with RoPE,
SwiGLU FFN), for the layer benchmark (``vp/bench/layer_bench.py``) and its tests.

This is not the SDK's compiler: it applies a handful of fixed rules, written down here, so that
the instruction count, the HBM traffic and the synchronisation of a decode step are realistic
and anyone can predict them. Host-side code: it imports only ``vp.spec``.

Roles
    *Attention cores* run the context-aware work, *dense cores* the context-free work. On a
    disaggregated board (CA + CF cores) the CA cores attend and the CF cores do every
    projection and the FFN. On a unified board every core does both, one phase after the
    other (the homogeneous baseline). The KV heads are split into ``groups``: the largest
    divisor of ``n_kv_heads`` that is at most the number of attention cores; group ``g`` (its
    KV heads and the query heads that share them) runs on attention core ``g``, so a KV head is
    never streamed twice. Attention cores beyond the group count stay idle.

Dense work (per layer, on every dense core ``k``)
    Every dense core keeps the whole residual ``x`` (batch × d_model, fp32). Output columns of
    every projection are split evenly over the dense cores (slices are multiples of 16
    elements when there are enough); weights are *column-sliced and pre-tiled in HBM*: each tile is the full ``K``
    rows × ``n_tile`` columns of the core's slice, stored contiguously (``K × n_tile``
    elements, row-major, then ``n_tile`` fp32 column scales for int8), so every weight LOAD is
    one contiguous transfer. ``n_tile`` is the largest multiple of the matrix unit's columns
    whose tile fits ``tile_fraction`` of the core's SRAM (default half: 16 MiB on a 32 MiB CF
    core); a ``K`` too deep for even one array-wide tile is refused (no K tiling). Each tile
    is one LOAD + one GEMM (m = batch) writing its columns of the output slice.

    RMSNORM → CONVERT to bf16 → QKV tiles → send q/k/v to the attention cores → receive every
    group's attention output → CONVERT → O tiles → ADD into own slice of ``x`` → all-gather
    ``x`` → RMSNORM → CONVERT → gate tiles, up tiles → SILU, MUL → all-gather the FFN
    activation → CONVERT → down tiles → ADD into own slice of ``x`` → all-gather ``x``.
    The QKV columns are ordered group by group (``q_g | k_g | v_g``), so a dense core's slice
    maps onto one or two attention cores. RMSNorm gains are loaded per layer (``d`` fp32).

Attention work (per layer, per sequence of the batch, on attention core ``g``)
    ROPE q and k at the token's position (an int32 loaded once from HBM) → CONVERT q and the
    new k, v to bf16 → STORE the new k, v rows into the KV cache → LOAD the K rows 0..T and the
    V rows 0..T of the group's KV heads → per KV head GEMM q·Kᵀ (m = query heads per KV head,
    ``trans_b``) → one SOFTMAX over all the group's heads → CONVERT → per KV head GEMM P·V.
    KV cache layout: ``[layer][sequence][K|V][kv_head][max_context][head_dim]`` bf16, so the
    K (or V) rows of all of a group's heads are one contiguous LOAD when the cache is exactly as
    long as the context (the default ``max_context = context + 1``). When K and V of the whole
    context do not fit the core's SRAM, the context is split into tiles and the GEMMs run per
    query head (m = 1), accumulating P·V over the tiles.

Activations between cores
    SEND/RECV pairs (rendezvous). An exchange (a set of messages) is scheduled in rounds, each
    core doing at most one SEND or RECV per round, rounds in the same order on every core: no
    cycle of waits can form, and every core follows the same phase order, so the whole token
    is deadlock-free without BARRIERs. A message from a core to itself is a local copy (SCALE
    by 1.0). The data dependences are the synchronisation: no semaphores, no barriers.

Command stream
    One program per core covering every layer (thousands of instructions per dense core for a
    70B model; a per-layer LAUNCH would add a host round trip per layer and per core). A token
    is ``TIMESTAMP, LAUNCH × cores, WAIT_CORES, TIMESTAMP``: about 20 packets per token,
    whatever the depth. The timestamps bracket the token in simulated time.

First and last steps
    With a vocabulary the dense cores EMBED the token id (bf16 table) and CONVERT it into
    ``x``; after the last layer they apply the final RMSNorm, the LM head (column-sliced like
    any projection) and STORE their logits columns. Without one, ``x`` is LOADed from the
    ``input`` region. Both store their slice of the final hidden state to ``hidden``.

Batch ``B`` > 1 works the same with m = B in every dense GEMM; outputs narrower than a core's
slice are copied row by row, messages are sent per row, attention loops over the sequences.
Every sequence is at the same position ``context``. In functional mode the result is bit-exact
with a numpy reference of the same decode step (``tests/bench/test_layer_bench.py``).

Typical use::

    w = build_decode(SHAPES["70b"], load_board("afd"), context=4096)
    for address, image in w.program_images(): dev.write_mem(address, image)
    q.submit(*w.token_packets()); q.sync(...)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from vp.spec import isa, numerics
from vp.spec.board_config import BoardConfig
from vp.spec.units import KIB, MIB

__all__ = ["ModelShape", "SHAPES", "Message", "WeightMatrix", "DecodeWorkload", "build_decode",
           "split"]

#: Every SRAM buffer starts on this boundary (bytes).
SRAM_ALIGN = 64
#: Every HBM region starts on this boundary (bytes).
HBM_ALIGN = 64 * KIB
#: Column slices are multiples of this many elements (64 bytes of fp32).
SLICE_ALIGN = 16
#: Default share of a core's SRAM one weight tile may take: half, so a core that could overlap
#: loads with compute would have room for a second buffer (16 MiB on a 32 MiB CF core).
TILE_FRACTION = 0.5
RMS_EPS = 1e-5
ROPE_THETA = 10000.0
_DT = {"BF16": isa.DType.BF16, "INT8": isa.DType.INT8}


@dataclass(frozen=True)
class ModelShape:
    """A decoder stack. ``weight_dtype`` is ``"BF16"`` or ``"INT8"`` (weight-only, fp32
    per-column scales); ``vocab`` 0 means no embedding and no LM head."""

    name: str
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    n_layers: int
    vocab: int = 0
    weight_dtype: str = "BF16"

    def __post_init__(self):
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"{self.name}: d_model must divide by n_heads and n_heads by "
                             f"n_kv_heads")
        if self.head_dim % 2:
            raise ValueError(f"{self.name}: head_dim {self.head_dim} must be even (RoPE)")
        if self.weight_dtype not in _DT:
            raise ValueError(f"{self.name}: weight_dtype {self.weight_dtype!r} is not one of "
                             f"{', '.join(_DT)}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def weight_bytes_per_element(self) -> int:
        return _DT[self.weight_dtype].itemsize

    @property
    def params(self) -> int:
        """Weights (elements): projections, FFN, norms, embedding and LM head."""
        d, hd = self.d_model, self.head_dim
        per_layer = d * (self.n_heads + 2 * self.n_kv_heads) * hd + self.n_heads * hd * d \
            + 3 * d * self.d_ff + 2 * d
        return self.n_layers * per_layer + 2 * self.vocab * d + (d if self.vocab else 0)


#: The benchmark's shapes: LLaMA-2-7B, LLaMA-2-70B (GQA, 8 KV heads) and a small one that runs
#: in functional mode in seconds.
SHAPES = {
    "small": ModelShape("small", d_model=256, n_heads=4, n_kv_heads=4, d_ff=1024, n_layers=2,
                        vocab=512),
    "7b": ModelShape("7b", d_model=4096, n_heads=32, n_kv_heads=32, d_ff=11008, n_layers=32,
                     vocab=32000),
    "70b": ModelShape("70b", d_model=8192, n_heads=64, n_kv_heads=8, d_ff=28672, n_layers=80,
                      vocab=32000),
}


def split(n: int, parts: int, align: int = SLICE_ALIGN) -> list[tuple[int, int]]:
    """``[lo, hi)`` slices of ``range(n)`` for ``parts`` owners: equal sizes rounded up to a
    multiple of ``align`` (the last ones shorter or empty), or, when ``n < parts · align``,
    simply as equal as whole elements allow."""
    size = -(-n // parts // align) * align if n >= parts * align else -(-n // parts)
    return [(min(n, i * size), min(n, (i + 1) * size)) for i in range(parts)]


@dataclass(frozen=True)
class Message:
    """One activation message: ``nbytes`` from ``src``'s SRAM offset to ``dst``'s."""

    src: int
    src_sram: int
    dst: int
    dst_sram: int
    nbytes: int


@dataclass
class WeightMatrix:
    """A K × N weight matrix, column-sliced over the dense cores and pre-tiled in HBM.

    ``tiles`` holds ``(core, column of the matrix, n columns, HBM address)``; a tile is K × n
    elements row-major (then n fp32 scales for int8), contiguous."""

    name: str
    k: int
    n: int
    dtype: str
    tiles: list[tuple[int, int, int, int]] = field(default_factory=list)

    def tile_bytes(self, n: int) -> int:
        return self.k * n * _DT[self.dtype].itemsize + (4 * n if self.dtype == "INT8" else 0)

    @property
    def nbytes(self) -> int:
        return sum(self.tile_bytes(n) for _, _, n, _ in self.tiles)


class _Sram:
    """Bump allocator of one core's SRAM: named buffers, all checked against its size."""

    def __init__(self, core: int, size: int):
        self.core, self.size, self.top = core, size, 0
        self.buffers: dict[str, tuple[int, int]] = {}

    def alloc(self, name: str, nbytes: int) -> int:
        offset = -(-self.top // SRAM_ALIGN) * SRAM_ALIGN
        if offset + nbytes > self.size:
            raise ValueError(f"core {self.core}: {name} ({nbytes} bytes) does not fit its "
                             f"{self.size}-byte SRAM ({offset} bytes already used)")
        self.buffers[name] = (offset, nbytes)
        self.top = offset + nbytes
        return offset

    def rest(self, name: str) -> tuple[int, int]:
        """The rest of the SRAM as one buffer: (offset, bytes)."""
        offset = self.alloc(name, 0)
        self.buffers[name] = (offset, self.size - offset)
        self.top = self.size
        return offset, self.size - offset


class _Hbm:
    """Bump allocator of HBM regions."""

    def __init__(self, base: int, size: int):
        self.base, self.end, self.top = base, base + size, base + MIB
        self.regions: dict[str, tuple[int, int]] = {}

    def alloc(self, name: str, nbytes: int) -> int:
        address = -(-self.top // HBM_ALIGN) * HBM_ALIGN
        if address + nbytes > self.end:
            raise ValueError(f"HBM: {name} ({nbytes} bytes) does not fit: the model needs more "
                             f"than the board's {self.end - self.base} bytes")
        self.regions[name] = (address, nbytes)
        self.top = address + nbytes
        return address


@dataclass
class DecodeWorkload:
    """Everything one decode token needs: programs, HBM layout, packets, traffic figures.

    Attributes:
        shape, board, batch, context (tokens already in the KV cache = the new token's
        position), max_context (KV cache rows per head).
        attn_cores, dense_cores: core ids of each role (``attn_cores[g]`` runs group ``g``).
        programs: core id → its :class:`isa.Program`; program_address: core id → HBM address.
        regions: name → (HBM address, bytes): ``ring``, ``timestamps``, ``params`` (int32 token
        ids then int32 positions), ``programs``, weights, ``kv``, ``hidden``, ``logits``...
        matrices: the weight matrices (tiling and addresses). sram: core id → buffers.
        weight_read_bytes / kv_read_bytes / kv_write_bytes: HBM traffic of one token (bytes).
    """

    shape: ModelShape
    board: BoardConfig
    batch: int
    context: int
    max_context: int
    attn_cores: list[int]
    dense_cores: list[int]
    programs: dict[int, isa.Program]
    program_address: dict[int, int]
    regions: dict[str, tuple[int, int]]
    matrices: list[WeightMatrix]
    sram: dict[int, dict[str, tuple[int, int]]]
    weight_read_bytes: int = 0
    kv_read_bytes: int = 0
    kv_write_bytes: int = 0
    messages: int = 0

    # -- what the host writes and submits --------------------------------------------------
    def program_images(self) -> list[tuple[int, np.ndarray]]:
        """(HBM address, bytes) of every core's program: real bytes in both modes."""
        return [(self.program_address[c], np.frombuffer(p.to_bytes(), np.uint8))
                for c, p in sorted(self.programs.items())]

    def token_packets(self, timestamps: bool = True) -> list[bytes]:
        """Command packets of one token: TIMESTAMP, one LAUNCH per core, WAIT_CORES, TIMESTAMP
        (the two timestamps land at ``regions["timestamps"]`` and ``+ 8``, in ns)."""
        ts = self.regions["timestamps"][0]
        mask = sum(1 << c for c in self.programs)
        packets = [isa.encode_packet("TIMESTAMP", address=ts)] if timestamps else []
        packets += [isa.encode_packet("LAUNCH", core_mask=1 << c, program=a, arg=self.context)
                    for c, a in sorted(self.program_address.items())]
        packets.append(isa.encode_packet("WAIT_CORES", core_mask=mask))
        if timestamps:
            packets.append(isa.encode_packet("TIMESTAMP", address=ts + 8))
        return packets

    @property
    def instructions(self) -> int:
        """Instructions executed per token, all cores."""
        return sum(len(p) for p in self.programs.values())

    @property
    def hbm_read_bytes(self) -> int:
        """Weights + KV read per token (bytes): what an HBM roofline charges."""
        return self.weight_read_bytes + self.kv_read_bytes

    def functional_images(self, seed: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """(HBM address, bytes) of deterministic random weights, norms, embedding, KV cache and
        token parameters for functional mode (performance mode writes none of them).

        Weights are N(0, 1/K) in bf16, or int8 with per-column scales of the same spread;
        gains are 1; the KV cache holds N(0, 1) bf16 rows for the context."""
        rng = np.random.default_rng(seed)
        s = self.shape
        for m in self.matrices:
            if m.name.endswith("norm"):
                yield self._region(m.name)[0], np.ones(m.n, np.float32).view(np.uint8)
                continue
            w = rng.standard_normal((m.k, m.n), dtype=np.float32) / np.float32(math.sqrt(m.k))
            if m.name == "embedding":
                yield m.tiles[0][3], numerics.to_bf16(w).view(np.uint8).reshape(-1)
                continue
            for _core, c0, n, address in m.tiles:
                block = w[:, c0:c0 + n]
                if m.dtype == "INT8":
                    scale = (np.abs(block).max(axis=0) / 127).astype(np.float32) + 1e-12
                    q = np.clip(np.rint(block / scale), -127, 127).astype(np.int8)
                    data = np.concatenate([q.reshape(-1).view(np.uint8), scale.view(np.uint8)])
                else:
                    data = numerics.to_bf16(np.ascontiguousarray(block)).reshape(-1).view(np.uint8)
                yield address, data
        kv_address, kv_bytes = self._region("kv")
        rows = self.batch * s.n_layers * 2 * s.n_kv_heads
        hd, T = s.head_dim, self.context
        for r in range(rows):
            block = rng.standard_normal((T, hd), dtype=np.float32)
            yield kv_address + r * self.max_context * hd * 2, \
                numerics.to_bf16(block).reshape(-1).view(np.uint8)
        ids = rng.integers(0, max(1, s.vocab), self.batch).astype("<i4")
        positions = np.full(self.batch, self.context, "<i4")
        yield self._region("params")[0], np.concatenate([ids, positions]).view(np.uint8)
        if "input" in self.regions:
            x = rng.standard_normal((self.batch, s.d_model), dtype=np.float32)
            yield self._region("input")[0], x.view(np.uint8).reshape(-1)

    def _region(self, name: str) -> tuple[int, int]:
        return self.regions[name]


class _Builder:
    """Builds a :class:`DecodeWorkload` (see the module docstring for the rules)."""

    def __init__(self, shape: ModelShape, board: BoardConfig, batch: int, context: int,
                 max_context: int | None, tile_fraction: float, kv_tile_rows: int | None):
        if batch < 1 or context < 0:
            raise ValueError(f"batch {batch} must be >= 1 and context {context} >= 0")
        self.s, self.board, self.B, self.T = shape, board, batch, context
        self.Tmax = max_context if max_context is not None else context + 1
        if self.Tmax < context + 1:
            raise ValueError(f"max_context {self.Tmax} leaves no row for token {context}")
        self.tile_fraction = tile_fraction
        self.kv_tile_rows = kv_tile_rows
        kinds = board.cores.kinds()
        ca = [i for i, k in enumerate(kinds) if k == "ca"]
        cf = [i for i, k in enumerate(kinds) if k == "cf"]
        uni = [i for i, k in enumerate(kinds) if k == "unified"]
        if ca and cf:
            attn, self.dense = ca, cf
        elif uni:
            attn, self.dense = uni, uni
        else:
            raise ValueError(f"board {board.name}: needs CA and CF cores, or unified cores")
        self.groups = max(g for g in range(1, len(attn) + 1) if shape.n_kv_heads % g == 0)
        self.attn = attn[:self.groups]
        self.cores = sorted(set(self.attn) | set(self.dense))
        self.params = {c: getattr(board.cores, kinds[c]) for c in self.cores}
        self.prog = {c: isa.Program() for c in self.cores}
        self.sram = {c: _Sram(c, self.params[c].sram) for c in self.cores}
        self.hbm = _Hbm(board.hbm.base, board.hbm.size)
        self.matrices: list[WeightMatrix] = []
        self.tag = 0
        self.messages = 0
        self.weight_read = self.kv_read = self.kv_write = 0
        # Shapes of the work.
        s = shape
        self.hd = s.head_dim
        self.kv_g = s.n_kv_heads // self.groups          # KV heads per group
        self.rep = s.n_heads // s.n_kv_heads             # query heads per KV head
        self.q_g = self.kv_g * self.rep                  # query heads per group
        self.G = (self.q_g + 2 * self.kv_g) * self.hd    # QKV columns per group
        self.d_attn = s.n_heads * self.hd
        nd = len(self.dense)
        self.sl_d = dict(zip(self.dense, split(s.d_model, nd)))
        self.sl_qkv = dict(zip(self.dense, split(self.groups * self.G, nd)))
        self.sl_ff = dict(zip(self.dense, split(s.d_ff, nd)))
        self.sl_v = dict(zip(self.dense, split(s.vocab, nd))) if s.vocab else {}

    # -- layout ------------------------------------------------------------------------------
    def _layout_sram(self) -> None:
        s, B, f4, b2 = self.s, self.B, 4, 2
        widest = max(s.d_model, self.d_attn, s.d_ff)
        for c in self.cores:
            m = self.sram[c]
            m.alloc("params", 2 * 4 * B)                      # ids, then positions (int32)
            if c in self.dense:
                m.alloc("x", B * s.d_model * f4)
                m.alloc("h", B * s.d_model * f4)
                m.alloc("gamma", s.d_model * f4)
                m.alloc("hb", B * widest * b2)
                m.alloc("attn", B * self.d_attn * f4)
                m.alloc("act", B * s.d_ff * f4)
                m.alloc("qkv_out", B * _w(self.sl_qkv[c]) * f4)
                m.alloc("proj_out", B * _w(self.sl_d[c]) * f4)
                m.alloc("gate_out", B * _w(self.sl_ff[c]) * f4)
                m.alloc("up_out", B * _w(self.sl_ff[c]) * f4)
                if s.vocab:
                    m.alloc("emb", B * s.d_model * b2)
                    m.alloc("logits", B * _w(self.sl_v[c]) * f4)
            if c in self.attn:
                T1 = self.T + 1
                m.alloc("qkv_in", B * self.G * f4)
                m.alloc("qb", self.q_g * self.hd * b2)
                m.alloc("kv_new", 2 * self.kv_g * self.hd * b2)
                m.alloc("scores", self.q_g * T1 * f4)
                m.alloc("probs", self.q_g * T1 * b2)
                m.alloc("o", B * self.q_g * self.hd * f4)
            if B > 1 and c in self.dense:
                m.alloc("scratch", B * self._widest_tile(c) * f4)
            m.rest("stream")                                    # weight tiles / KV tiles

    def _widest_tile(self, c: int) -> int:
        s = self.s
        ks = [s.d_model, self.d_attn, s.d_ff]
        return max(self._tile_cols(c, k) for k in ks)

    def _tile_cols(self, c: int, k: int) -> int:
        """Columns of one weight tile of depth ``k`` on core ``c``: the largest multiple of the
        array width whose tile fits ``tile_fraction`` of the SRAM."""
        p, wb = self.params[c], self.s.weight_bytes_per_element
        budget = int(p.sram * self.tile_fraction)
        per_col = k * wb + (4 if self.s.weight_dtype == "INT8" else 0)
        n = budget // per_col // p.matrix_cols * p.matrix_cols
        if n == 0:
            raise ValueError(f"core {c}: a {k}-deep weight tile one array wide "
                             f"({per_col * p.matrix_cols} bytes) exceeds {budget} bytes of "
                             f"SRAM (K tiling is not generated)")
        return n

    def _matrix(self, name: str, k: int, slices: dict[int, tuple[int, int]],
                n: int) -> WeightMatrix:
        m = WeightMatrix(name, k, n, self.s.weight_dtype)
        sizes = []
        for c in self.dense:
            lo, hi = slices[c]
            width = self._tile_cols(c, k)
            stream = self.sram[c].buffers["stream"][1]
            for c0 in range(lo, hi, width):
                w = min(width, hi - c0)
                if m.tile_bytes(w) > stream:
                    raise ValueError(f"core {c}: weight tile of {m.tile_bytes(w)} bytes exceeds "
                                     f"its {stream}-byte stream buffer")
                sizes.append((c, c0, w))
        base = self.hbm.alloc(name, sum(m.tile_bytes(w) for _, _, w in sizes))
        for c, c0, w in sizes:
            m.tiles.append((c, c0, w, base))
            base += m.tile_bytes(w)
        self.matrices.append(m)
        return m

    def _vector_region(self, name: str, n: int) -> WeightMatrix:
        """An fp32 vector of weights (RMSNorm gains), loaded whole by every dense core."""
        m = WeightMatrix(name, 1, n, "FP32")
        self.hbm.alloc(name, 4 * n)
        self.matrices.append(m)
        return m

    def _layout_hbm(self) -> None:
        s, h = self.s, self.hbm
        h.alloc("ring", 64 * KIB)
        h.alloc("timestamps", 4 * KIB)
        h.alloc("params", 2 * 4 * self.B)
        self.layer_weights = []
        for layer in range(s.n_layers):
            p = f"layer{layer}."
            self.layer_weights.append({
                "norm1": self._vector_region(p + "attn_norm", s.d_model),
                "qkv": self._matrix(p + "wqkv", s.d_model, self.sl_qkv, self.groups * self.G),
                "o": self._matrix(p + "wo", self.d_attn, self.sl_d, s.d_model),
                "norm2": self._vector_region(p + "ffn_norm", s.d_model),
                "gate": self._matrix(p + "w_gate", s.d_model, self.sl_ff, s.d_ff),
                "up": self._matrix(p + "w_up", s.d_model, self.sl_ff, s.d_ff),
                "down": self._matrix(p + "w_down", s.d_ff, self.sl_d, s.d_model),
            })
        if s.vocab:
            emb = WeightMatrix("embedding", s.vocab, s.d_model, "BF16")
            emb.tiles.append((-1, 0, s.d_model, h.alloc("embedding", s.vocab * s.d_model * 2)))
            self.matrices.append(emb)
            self.final_norm = self._vector_region("final_norm", s.d_model)
            self.lm_head = self._matrix("lm_head", s.d_model, self.sl_v, s.vocab)
            h.alloc("logits", self.B * s.vocab * 4)
        else:
            h.alloc("input", self.B * s.d_model * 4)
        h.alloc("hidden", self.B * s.d_model * 4)
        self.kv_head_bytes = self.Tmax * self.hd * 2
        self.kv = h.alloc("kv", self.B * s.n_layers * 2 * s.n_kv_heads * self.kv_head_bytes)

    def _kv_address(self, layer: int, b: int, which: int, kv_head: int, row: int = 0) -> int:
        s = self.s
        index = ((layer * self.B + b) * 2 + which) * s.n_kv_heads + kv_head
        return self.kv + index * self.kv_head_bytes + row * self.hd * 2

    # -- instruction helpers ----------------------------------------------------------------
    def buf(self, c: int, name: str) -> int:
        return self.sram[c].buffers[name][0]

    def _load(self, c: int, hbm: int, sram: int, nbytes: int, rows: int = 1,
              hbm_stride: int | None = None, sram_stride: int | None = None) -> None:
        self.prog[c].LOAD(hbm=hbm, sram=sram, row_bytes=nbytes, rows=rows,
                          hbm_stride=nbytes if hbm_stride is None else hbm_stride,
                          sram_stride=nbytes if sram_stride is None else sram_stride)

    def _store(self, c: int, hbm: int, sram: int, nbytes: int, rows: int = 1,
               hbm_stride: int | None = None, sram_stride: int | None = None) -> None:
        self.prog[c].STORE(hbm=hbm, sram=sram, row_bytes=nbytes, rows=rows,
                           hbm_stride=nbytes if hbm_stride is None else hbm_stride,
                           sram_stride=nbytes if sram_stride is None else sram_stride)

    def _copy(self, c: int, src: int, dst: int, n: int) -> None:
        """Local fp32 copy of ``n`` elements (the vector unit, SCALE by 1.0)."""
        if n:
            self.prog[c].SCALE(n=n, a=src, out=dst, factor=1.0)

    def _exchange(self, messages: list[Message]) -> None:
        """Emit SEND/RECV pairs in rounds (each core in at most one message per round; the
        same round order on every core), local messages as copies first."""
        for m in messages:
            if m.src == m.dst and m.nbytes:
                self._copy(m.src, m.src_sram, m.dst_sram, m.nbytes // 4)
        busy: list[set[int]] = []
        scheduled: list[tuple[int, Message]] = []
        for m in messages:
            if m.src == m.dst or not m.nbytes:
                continue
            r = 0
            while r < len(busy) and (m.src in busy[r] or m.dst in busy[r]):
                r += 1
            if r == len(busy):
                busy.append(set())
            busy[r] |= {m.src, m.dst}
            scheduled.append((r, m))
        scheduled.sort(key=lambda rm: rm[0])                  # stable: keeps message order
        for _, m in scheduled:
            self.tag = (self.tag + 1) & 0xFFFF_FFFF
            self.prog[m.src].SEND(core=m.dst, sram=m.src_sram, bytes=m.nbytes, tag=self.tag)
            self.prog[m.dst].RECV(core=m.src, sram=m.dst_sram, bytes=m.nbytes, tag=self.tag)
            self.messages += 1

    def _all_gather(self, buffer: str, row: int, slices: dict[int, tuple[int, int]]) -> None:
        """Every dense core sends its columns of ``buffer`` (B rows of ``row`` fp32) to every
        other dense core, same offsets; ordered by shift so rounds pack well."""
        dense, msgs = self.dense, []
        for shift in range(1, len(dense)):
            for i, src in enumerate(dense):
                dst = dense[(i + shift) % len(dense)]
                lo, hi = slices[src]
                for b in range(self.B):
                    off = (b * row + lo) * 4
                    msgs.append(Message(src, self.buf(src, buffer) + off, dst,
                                        self.buf(dst, buffer) + off, (hi - lo) * 4))
        self._exchange(msgs)

    def _rmsnorm(self, norm: WeightMatrix) -> None:
        s = self.s
        for c in self.dense:
            self._load(c, self.hbm.regions[norm.name][0], self.buf(c, "gamma"), s.d_model * 4)
            self.weight_read += s.d_model * 4
            self.prog[c].RMSNORM(rows=self.B, cols=s.d_model, a=self.buf(c, "x"),
                                 gamma=self.buf(c, "gamma"), out=self.buf(c, "h"), eps=RMS_EPS)
            self.prog[c].CONVERT(n=self.B * s.d_model, a=self.buf(c, "h"), out=self.buf(c, "hb"),
                                 from_dtype="FP32", to_dtype="BF16", scale=1.0)

    def _residual(self, out: str) -> None:
        """x[:, own slice] += out (B rows of the slice width)."""
        d = self.s.d_model
        for c in self.dense:
            lo, hi = self.sl_d[c]
            if hi == lo:
                continue
            if self.B == 1:
                x = self.buf(c, "x") + lo * 4
                self.prog[c].ADD(n=hi - lo, a=x, b=self.buf(c, out), out=x)
            else:
                for b in range(self.B):
                    x = self.buf(c, "x") + (b * d + lo) * 4
                    self.prog[c].ADD(n=hi - lo, a=x, b=self.buf(c, out) + b * (hi - lo) * 4,
                                     out=x)

    # -- phases ------------------------------------------------------------------------------
    def _prologue(self) -> None:
        s, B = self.s, self.B
        params = self.hbm.regions["params"][0]
        for c in self.cores:
            self._load(c, params, self.buf(c, "params"), 2 * 4 * B)
        for c in self.dense:
            if s.vocab:
                table = self.hbm.regions["embedding"][0]
                self.prog[c].EMBED(n=B, ids=self.buf(c, "params"), table=table,
                                   row_bytes=s.d_model * 2, out=self.buf(c, "emb"))
                self.weight_read += B * s.d_model * 2
                self.prog[c].CONVERT(n=B * s.d_model, a=self.buf(c, "emb"), out=self.buf(c, "x"),
                                     from_dtype="BF16", to_dtype="FP32", scale=1.0)
            else:
                self._load(c, self.hbm.regions["input"][0], self.buf(c, "x"), B * s.d_model * 4)

    def _layer(self, layer: int) -> None:
        s, B, w = self.s, self.B, self.layer_weights[layer]
        self._rmsnorm(w["norm1"])
        self._project(w["qkv"], "hb", "qkv_out", self.sl_qkv)
        self._exchange(self._qkv_messages())
        for g, c in enumerate(self.attn):
            self._attention(layer, g, c)
        self._exchange(self._attn_messages())
        for c in self.dense:
            self.prog[c].CONVERT(n=B * self.d_attn, a=self.buf(c, "attn"), out=self.buf(c, "hb"),
                                 from_dtype="FP32", to_dtype="BF16", scale=1.0)
        self._project(w["o"], "hb", "proj_out", self.sl_d)
        self._residual("proj_out")
        self._all_gather("x", s.d_model, self.sl_d)
        self._rmsnorm(w["norm2"])
        self._project(w["gate"], "hb", "gate_out", self.sl_ff)
        self._project(w["up"], "hb", "up_out", self.sl_ff)
        for c in self.dense:
            lo_, hi_ = self.sl_ff[c]
            n = hi_ - lo_
            if not n:
                continue
            g, u, act = self.buf(c, "gate_out"), self.buf(c, "up_out"), self.buf(c, "act")
            self.prog[c].SILU(n=B * n, a=g, out=g)
            for b in range(B):
                self.prog[c].MUL(n=n, a=g + b * n * 4, b=u + b * n * 4,
                                 out=act + (b * s.d_ff + lo_) * 4)
        self._all_gather("act", s.d_ff, self.sl_ff)
        for c in self.dense:
            self.prog[c].CONVERT(n=B * s.d_ff, a=self.buf(c, "act"), out=self.buf(c, "hb"),
                                 from_dtype="FP32", to_dtype="BF16", scale=1.0)
        self._project(w["down"], "hb", "proj_out", self.sl_d)
        self._residual("proj_out")
        self._all_gather("x", s.d_model, self.sl_d)

    def _project(self, m: WeightMatrix, a: str, out: str,
                 slices: dict[int, tuple[int, int]]) -> None:
        """Every dense core runs its tiles of ``m``: LOAD the tile, GEMM (m = batch, A = the
        bf16 buffer ``a``); the columns land in buffer ``out`` (B rows of the core's slice)."""
        B = self.B
        for c, c0, n, address in m.tiles:
            lo, hi = slices[c]
            tile, nbytes = self.buf(c, "stream"), m.tile_bytes(n)
            self._load(c, address, tile, nbytes)
            self.weight_read += nbytes
            col, row = c0 - lo, hi - lo
            direct = B == 1 or n == row                  # C is already rows of the slice
            target = self.buf(c, out) + col * 4 if direct else self.buf(c, "scratch")
            self.prog[c].GEMM(m=B, n=n, k=m.k, a=self.buf(c, a), b=tile, c=target,
                              scale=tile + m.k * n if m.dtype == "INT8" else 0,
                              dtype_a="BF16", dtype_b=m.dtype)
            if not direct:
                for b in range(B):
                    self._copy(c, target + b * n * 4, self.buf(c, out) + (b * row + col) * 4, n)

    def _qkv_messages(self) -> list[Message]:
        """Pieces of each dense core's QKV slice to the attention core of their group."""
        msgs = []
        for c in self.dense:
            lo, hi = self.sl_qkv[c]
            for g, a in enumerate(self.attn):
                g0, g1 = g * self.G, (g + 1) * self.G
                p0, p1 = max(lo, g0), min(hi, g1)
                if p0 >= p1:
                    continue
                for b in range(self.B):
                    msgs.append(Message(c, self.buf(c, "qkv_out") + (b * (hi - lo) + p0 - lo) * 4,
                                        a, self.buf(a, "qkv_in") + (b * self.G + p0 - g0) * 4,
                                        (p1 - p0) * 4))
        return msgs

    def _attn_messages(self) -> list[Message]:
        """Each attention core's output (its query heads) to every dense core, rotated so that
        rounds pack well."""
        msgs, n_out = [], self.q_g * self.hd
        dense = self.dense
        for shift in range(len(dense)):
            for g, a in enumerate(self.attn):
                c = dense[(g + shift) % len(dense)]
                for b in range(self.B):
                    msgs.append(Message(a, self.buf(a, "o") + b * n_out * 4, c,
                                        self.buf(c, "attn") + (b * self.d_attn + g * n_out) * 4,
                                        n_out * 4))
        return msgs

    def _attention(self, layer: int, g: int, c: int) -> None:
        """Decode attention of group ``g`` on core ``c`` for every sequence of the batch."""
        p, hd, T1 = self.prog[c], self.hd, self.T + 1
        qn, kvn = self.q_g * hd, self.kv_g * hd
        h0 = g * self.kv_g                                    # first KV head of the group
        stream, stream_bytes = self.sram[c].buffers["stream"]
        # Context rows per tile: K and V of every head of the group fit the stream buffer.
        tile = min(T1, stream_bytes // (2 * self.kv_g * hd * 2), self.kv_tile_rows or T1)
        if tile < 1:
            raise ValueError(f"core {c}: one KV row of {self.kv_g} heads does not fit SRAM")
        scores, probs = self.buf(c, "scores"), self.buf(c, "probs")
        qb, kv_new = self.buf(c, "qb"), self.buf(c, "kv_new")
        for b in range(self.B):
            qkv = self.buf(c, "qkv_in") + b * self.G * 4
            k_new = qkv + qn * 4                           # then v_new at + kvn * 4
            o = self.buf(c, "o") + b * qn * 4
            pos = self.buf(c, "params") + (self.B + b) * 4
            p.ROPE(rows=1, heads=self.q_g, head_dim=hd, a=qkv, out=qkv, positions=pos,
                   theta=ROPE_THETA)
            p.ROPE(rows=1, heads=self.kv_g, head_dim=hd, a=k_new, out=k_new, positions=pos,
                   theta=ROPE_THETA)
            p.CONVERT(n=qn, a=qkv, out=qb, from_dtype="FP32", to_dtype="BF16", scale=1.0)
            p.CONVERT(n=2 * kvn, a=k_new, out=kv_new, from_dtype="FP32", to_dtype="BF16",
                      scale=1.0)
            for which in (0, 1):                              # the new K row, the new V row
                self._store(c, self._kv_address(layer, b, which, h0, self.T),
                            kv_new + which * kvn * 2, hd * 2, rows=self.kv_g,
                            hbm_stride=self.kv_head_bytes, sram_stride=hd * 2)
                self.kv_write += kvn * 2
            single = tile == T1
            for t0 in range(0, T1, tile):
                n = min(tile, T1 - t0)
                k_buf, v_buf = stream, stream + self.kv_g * n * hd * 2
                self._load(c, self._kv_address(layer, b, 0, h0, t0), k_buf, n * hd * 2,
                           rows=self.kv_g, hbm_stride=self.kv_head_bytes, sram_stride=n * hd * 2)
                self.kv_read += self.kv_g * n * hd * 2
                for j in range(self.kv_g):
                    k_j = k_buf + j * n * hd * 2
                    if single:                                # all query heads of KV head j
                        p.GEMM(m=self.rep, n=n, k=hd, a=qb + j * self.rep * hd * 2, b=k_j,
                               c=scores + j * self.rep * T1 * 4, scale=0, dtype_a="BF16",
                               dtype_b="BF16", flags=("trans_b",))
                    else:                                     # one query head at a time
                        for i in range(j * self.rep, (j + 1) * self.rep):
                            p.GEMM(m=1, n=n, k=hd, a=qb + i * hd * 2, b=k_j,
                                   c=scores + (i * T1 + t0) * 4, scale=0, dtype_a="BF16",
                                   dtype_b="BF16", flags=("trans_b",))
            p.SOFTMAX(rows=self.q_g, cols=T1, a=scores, out=scores,
                      scale=1.0 / math.sqrt(hd), pos0=0)
            p.CONVERT(n=self.q_g * T1, a=scores, out=probs, from_dtype="FP32", to_dtype="BF16",
                      scale=1.0)
            for t0 in range(0, T1, tile):
                n = min(tile, T1 - t0)
                v_buf = stream + self.kv_g * n * hd * 2
                self._load(c, self._kv_address(layer, b, 1, h0, t0), v_buf, n * hd * 2,
                           rows=self.kv_g, hbm_stride=self.kv_head_bytes, sram_stride=n * hd * 2)
                self.kv_read += self.kv_g * n * hd * 2
                for j in range(self.kv_g):
                    v_j = v_buf + j * n * hd * 2
                    if single:
                        p.GEMM(m=self.rep, n=hd, k=n, a=probs + j * self.rep * T1 * 2, b=v_j,
                               c=o + j * self.rep * hd * 4, scale=0, dtype_a="BF16",
                               dtype_b="BF16")
                    else:
                        for i in range(j * self.rep, (j + 1) * self.rep):
                            p.GEMM(m=1, n=hd, k=n, a=probs + (i * T1 + t0) * 2, b=v_j,
                                   c=o + i * hd * 4, scale=0, dtype_a="BF16", dtype_b="BF16",
                                   flags=("accumulate",) if t0 else ())

    def _epilogue(self) -> None:
        s, B = self.s, self.B
        if s.vocab:
            self._rmsnorm(self.final_norm)
            self._project(self.lm_head, "hb", "logits", self.sl_v)
            out = self.hbm.regions["logits"][0]
            for c in self.dense:
                lo, hi = self.sl_v[c]
                if hi > lo:
                    self._store(c, out + lo * 4, self.buf(c, "logits"), (hi - lo) * 4, rows=B,
                                hbm_stride=s.vocab * 4, sram_stride=(hi - lo) * 4)
        hidden = self.hbm.regions["hidden"][0]
        for c in self.dense:
            lo, hi = self.sl_d[c]
            if hi > lo:
                self._store(c, hidden + lo * 4, self.buf(c, "x") + lo * 4, (hi - lo) * 4, rows=B,
                            hbm_stride=s.d_model * 4, sram_stride=s.d_model * 4)
        for c in self.cores:
            self.prog[c].END()

    def build(self) -> DecodeWorkload:
        self._layout_sram()
        self._layout_hbm()
        self._prologue()
        for layer in range(self.s.n_layers):
            self._layer(layer)
        self._epilogue()
        # Programs go last in HBM, each on a 4 KiB boundary.
        sizes = {c: -(-self.prog[c].nbytes // (4 * KIB)) * 4 * KIB for c in self.cores}
        address, addresses = self.hbm.alloc("programs", sum(sizes.values())), {}
        for c in self.cores:
            addresses[c] = address
            address += sizes[c]
        return DecodeWorkload(
            shape=self.s, board=self.board, batch=self.B, context=self.T, max_context=self.Tmax,
            attn_cores=list(self.attn), dense_cores=list(self.dense), programs=self.prog,
            program_address=addresses, regions=dict(self.hbm.regions), matrices=self.matrices,
            sram={c: dict(m.buffers) for c, m in self.sram.items()},
            weight_read_bytes=self.weight_read, kv_read_bytes=self.kv_read,
            kv_write_bytes=self.kv_write, messages=self.messages)


def _w(sl: tuple[int, int]) -> int:
    return sl[1] - sl[0]


def build_decode(shape: ModelShape | str, board: BoardConfig, *, batch: int = 1,
                 context: int = 4096, max_context: int | None = None,
                 tile_fraction: float = TILE_FRACTION,
                 kv_tile_rows: int | None = None) -> DecodeWorkload:
    """The programs, HBM layout and packets of one decode token of ``shape`` (or a name of
    :data:`SHAPES`) on ``board``, for ``batch`` sequences each with ``context`` tokens in the KV
    cache (the new token is at position ``context``); ``max_context`` KV rows per head
    (default ``context + 1``); ``tile_fraction`` of a dense core's SRAM per weight tile;
    ``kv_tile_rows`` caps the context rows per KV tile (default: as many as fit, so usually one
    tile). Raises ValueError when the model does not fit the board."""
    if isinstance(shape, str):
        shape = SHAPES[shape]
    return _Builder(shape, board, batch, context, max_context, tile_fraction,
                    kv_tile_rows).build()
